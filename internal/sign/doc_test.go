package sign

import (
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestPackageDoc checks the package comment lives in doc.go and explains
// the security model, and that no other file carries one.
func TestPackageDoc(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		has := f.Doc != nil
		if e.Name() == "doc.go" {
			if !has || !strings.Contains(f.Doc.Text(), "Security model") {
				t.Errorf("doc.go lacks a package comment on the security model")
			}
		} else if has {
			t.Errorf("%s has a package comment; keep it in doc.go", e.Name())
		}
	}
}
