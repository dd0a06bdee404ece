package scan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keystile/keystile/internal/scan"
)

// TestSARIFValidatesAgainstSchema validates the scanner's SARIF output
// against the official SARIF 2.1.0 JSON schema (sarif-2.1.0-rtm.5.json,
// OASIS; copied from the MIT-licensed npm package @microsoft/jest-sarif
// 1.0.0-beta.0, lib/schemas/).
func TestSARIFValidatesAgainstSchema(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "sarif-2.1.0-rtm.5.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("sarif.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("sarif.json")
	if err != nil {
		t.Fatal(err)
	}
	s := newScanner(t, true)
	rep, err := s.ScanPaths(context.Background(), []string{filepath.Join("testdata", "corpus")})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) == 0 {
		t.Fatal("no findings to validate")
	}
	for _, r := range []*scan.Report{rep, {Version: scan.ReportVersion}} {
		var b bytes.Buffer
		if err := scan.WriteSARIF(&b, r); err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Fatalf("SARIF output does not validate against the 2.1.0 schema: %v", err)
		}
	}
	// The validator is not vacuous: a log missing "version" is refused.
	var bad map[string]any
	var b bytes.Buffer
	_ = scan.WriteSARIF(&b, rep)
	_ = json.Unmarshal(b.Bytes(), &bad)
	delete(bad, "version")
	raw, _ := json.Marshal(bad)
	inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err := sch.Validate(inst); err == nil {
		t.Fatal("schema accepted a log without version")
	}
}
