package policy_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestCompileErrorsGolden compiles each testdata/compile/*.yaml (one bad
// file per kind of error) and compares the error text, which names
// file:line:col and key, with the .golden file next to it.
func TestCompileErrorsGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "compile", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(filepath.Base(f), data)
			if err != nil {
				t.Fatalf("the config itself must parse: %v", err)
			}
			_, err = policy.Compile(cfg)
			if err == nil {
				t.Fatal("compiled without error")
			}
			for _, e := range config.Errors(err) {
				if e.Line == 0 || e.Key == "" || !strings.HasPrefix(e.Key, "policies.") {
					t.Errorf("error without position or key: %#v", e)
				}
			}
			if len(config.Errors(err)) == 0 {
				t.Errorf("not *config.Error values: %v", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
