package scan_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keystile/keystile/internal/scan"
)

// Scan a tree for leaked secrets and print the masked findings.
func ExampleScanner_ScanPaths() {
	dir, err := os.MkdirTemp("", "scan-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "bot.env"), []byte("KEYSTILE_TOKEN=kst_live_Wo6QcJrnqWtgLeQ5c8kVhXE1TIqAsVaczUmRfRbdifV4EC7oa\n"), 0o600)

	s, err := scan.New(context.Background(), scan.Options{}) // add Vault: v to match held values
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := s.ScanPaths(context.Background(), []string{dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range rep.Findings {
		fmt.Println(filepath.Base(f.File), f.Line, f.Detector, f.Preview)
	}
	// Output: bot.env 1 kst-token kst_****C7oa
}
