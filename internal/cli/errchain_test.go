package cli

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoRepeatedErrorPrefixInSources: no fmt.Errorf in internal/ wraps a
// sentinel error whose message starts with the same "pkg: " prefix as its
// own format ("token: %s: %w" around "token: not found" printed
// "token: tok_x: token: not found"). Wrap as fmt.Errorf("%w: detail", ErrX)
// instead. TestCLIEdges checks the messages the CLI prints.
func TestNoRepeatedErrorPrefixInSources(t *testing.T) {
	fset := token.NewFileSet()
	var files []*ast.File
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	prefix := func(s string) string {
		p, _, ok := strings.Cut(s, ": ")
		if !ok || strings.ContainsAny(p, " %") {
			return ""
		}
		return p
	}
	// Sentinels: var ErrX = errors.New("pkg: ...").
	sentinels := map[string]string{} // "pkg.ErrX" -> prefix
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					call, ok := vs.Values[i].(*ast.CallExpr)
					if !ok || len(call.Args) != 1 || !isSel(call.Fun, "errors", "New") {
						continue
					}
					if lit, ok := call.Args[0].(*ast.BasicLit); ok {
						if s, err := strconv.Unquote(lit.Value); err == nil && prefix(s) != "" {
							sentinels[f.Name.Name+"."+n.Name] = prefix(s)
						}
					}
				}
			}
		}
	}
	if len(sentinels) < 20 {
		t.Fatalf("found only %d sentinel errors", len(sentinels))
	}
	checked := 0
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 || !isSel(call.Fun, "fmt", "Errorf") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok {
				return true
			}
			format, err := strconv.Unquote(lit.Value)
			if err != nil || !strings.Contains(format, "%w") {
				return true
			}
			checked++
			p := prefix(format)
			for _, a := range call.Args[1:] {
				key := ""
				switch x := a.(type) {
				case *ast.Ident:
					key = f.Name.Name + "." + x.Name
				case *ast.SelectorExpr:
					if id, ok := x.X.(*ast.Ident); ok {
						key = id.Name + "." + x.Sel.Name
					}
				}
				if sp, ok := sentinels[key]; ok && p != "" && sp == p {
					t.Errorf("%s: fmt.Errorf(%q, ...) wraps %s, whose message starts with %q too", fset.Position(call.Pos()), format, key, p+": ")
				}
			}
			return true
		})
	}
	if checked < 100 {
		t.Fatalf("checked only %d fmt.Errorf calls", checked)
	}
}

func isSel(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := s.X.(*ast.Ident)
	return ok && id.Name == pkg && s.Sel.Name == name
}
