package kraken_test

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

func TestPackageDoc(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.Contains(f.Doc.Text(), "Security model") {
		t.Fatal("doc.go must hold the package doc with its security model")
	}
}
