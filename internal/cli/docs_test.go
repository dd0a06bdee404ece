package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// sources returns the text of the non-test Go files of the packages
// (directories relative to internal/cli).
func sources(t *testing.T, dirs ...string) string {
	t.Helper()
	var b strings.Builder
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", d, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f) // #nosec G304 -- the repository's own sources
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func matches(re, text string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(text, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGatewayErrorsDocumented: every error code the gateway can answer
// and every rule it can put in an answer or the audit log is listed in
// docs/ERRORS.md. The codes and rules are read from the gateway's source.
func TestGatewayErrorsDocumented(t *testing.T) {
	src := sources(t, "../gateway")
	doc := readDoc(t, "ERRORS.md")
	codes := matches(`publicError\{\s*(?:http\.Status\w+|\d+)\s*,\s*"([a-z_]+)"`, src)
	if len(codes) < 15 {
		t.Fatalf("found only %d codes in the gateway's source: %q", len(codes), codes)
	}
	rules := matches(`"((?:request|token|route|venue|idem|upstream|audit|policy)\.[a-z_]+)"`, src)
	for _, r := range matches(`\{token\.Err\w+, "([a-z_]+)"\}`, src) {
		rules = append(rules, "token."+r)
	}
	rules = append(rules, "token."+strings.Join(matches(`return "([a-z_]+)"\s*\n}\s*\n\s*// splitVenue`, src), ""))
	rules = append(rules, matches(`Rule\w+\s*=\s*"(policy\.[a-z_]+)"`, sources(t, "../policy"))...)
	if len(rules) < 25 {
		t.Fatalf("found only %d rules in the gateway's source: %q", len(rules), rules)
	}
	for _, c := range codes {
		if !strings.Contains(doc, "`"+c+"`") {
			t.Errorf("gateway error code %q is not in docs/ERRORS.md", c)
		}
	}
	for _, r := range rules {
		if !strings.Contains(doc, "`"+r+"`") {
			t.Errorf("gateway rule %q is not in docs/ERRORS.md", r)
		}
	}
}

// TestAdminErrorsDocumented: every error code and every route of the
// admin API (the admin package and the routes app adds) is in
// docs/ADMIN_API.md.
func TestAdminErrorsDocumented(t *testing.T) {
	src := sources(t, "../admin", "../app")
	doc := readDoc(t, "ADMIN_API.md")
	codes := matches(`WriteError\(w, [^,]+, "([a-z_]+)"`, src)
	codes = append(codes, matches(`code\s*:?=\s*(?:http\.Status\w+|\d+),\s*"([a-z_]+)"`, src)...)
	if len(codes) < 8 {
		t.Fatalf("found only %d codes: %q", len(codes), codes)
	}
	for _, c := range codes {
		if !strings.Contains(doc, "`"+c+"`") {
			t.Errorf("admin error code %q is not in docs/ADMIN_API.md", c)
		}
	}
	paths := map[string]string{}
	for _, m := range regexp.MustCompile(`(Path\w+)\s*=\s*"([^"]+)"`).FindAllStringSubmatch(src, -1) {
		paths[m[1]] = m[2]
	}
	actions := matches(`"(\w+)": tokens\.\w+`, src)
	var routes []string
	for _, m := range regexp.MustCompile(`HandleFunc\("(GET|POST|PUT|DELETE) "\s*\+\s*(?:admin\.)?(Path\w+)(?:\s*\+\s*"([^"]*)")?(\s*\+\s*action)?`).FindAllStringSubmatch(src, -1) {
		base, ok := paths[m[2]]
		if !ok {
			t.Fatalf("unknown path constant %s", m[2])
		}
		if m[4] != "" {
			for _, a := range actions {
				routes = append(routes, m[1]+" "+base+m[3]+a)
			}
			continue
		}
		routes = append(routes, m[1]+" "+base+m[3])
	}
	if len(routes) < 14 {
		t.Fatalf("found only %d routes: %q", len(routes), routes)
	}
	for _, r := range routes {
		if !strings.Contains(doc, "`"+r) {
			t.Errorf("admin route %q is not in docs/ADMIN_API.md", r)
		}
	}
}
