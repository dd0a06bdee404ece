package scan_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/scan"
)

func newScanner(t testing.TB, withVault bool) *scan.Scanner {
	t.Helper()
	o := scan.Options{}
	if withVault {
		o.Vault = newTestVault(t)
	}
	s, err := scan.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readExpected(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "corpus", "expected.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

func keysOf(rep *scan.Report, trim string) []string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, fmt.Sprintf("%s:%d %s %s", strings.TrimPrefix(f.File, trim), f.Line, f.Detector, f.Rule))
	}
	sort.Strings(out)
	return out
}

// TestCorpus: every planted secret is found (by the right detector and
// rule, on the right line) and no look-alike is.
func TestCorpus(t *testing.T) {
	s := newScanner(t, true)
	ctx := context.Background()
	planted := filepath.Join("testdata", "corpus", "planted")
	rep, err := s.ScanPaths(ctx, []string{planted})
	if err != nil {
		t.Fatal(err)
	}
	got, want := keysOf(rep, filepath.ToSlash(planted)+"/"), readExpected(t)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("planted findings\n got: %q\nwant: %q", got, want)
	}
	rep, err = s.ScanPaths(ctx, []string{filepath.Join("testdata", "corpus", "lookalike")})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 || rep.Files == 0 {
		t.Errorf("look-alikes: %d files, findings %q", rep.Files, keysOf(rep, ""))
	}
}

// TestNoVault: without a vault only the vault findings disappear.
func TestNoVault(t *testing.T) {
	s := newScanner(t, false)
	rep, err := s.ScanPaths(context.Background(), []string{filepath.Join("testdata", "corpus")})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, l := range readExpected(t) {
		if !strings.Contains(l, " vault ") {
			want++
		}
	}
	if len(rep.Findings) != want {
		t.Errorf("got %d findings, want %d: %q", len(rep.Findings), want, keysOf(rep, ""))
	}
}

// canaries returns every planted secret and vault value with its hex and
// base64 forms.
func canaries() []string {
	var vals []string
	vals = append(vals, plantedSecrets...)
	for _, fs := range heldValues {
		for _, v := range fs {
			if len(v) >= 8 {
				vals = append(vals, v)
			}
		}
	}
	var out []string
	for _, v := range vals {
		out = append(out, v, hex.EncodeToString([]byte(v)), base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)))
	}
	return out
}

// TestOutputsRevealNoSecret: text, JSON and SARIF hold the masked preview
// and never a value (nor more than 4+4 characters of it).
func TestOutputsRevealNoSecret(t *testing.T) {
	s := newScanner(t, true)
	rep, err := s.ScanPaths(context.Background(), []string{filepath.Join("testdata", "corpus")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		write func(*bytes.Buffer, *scan.Report) error
	}{
		{"text", func(b *bytes.Buffer, r *scan.Report) error { return scan.WriteText(b, r) }},
		{"json", func(b *bytes.Buffer, r *scan.Report) error { return scan.WriteJSON(b, r) }},
		{"sarif", func(b *bytes.Buffer, r *scan.Report) error { return scan.WriteSARIF(b, r) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(&b, rep); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, c := range canaries() {
				// Any 9-character window of a value would be more than the
				// preview shows.
				for i := 0; i+9 <= len(c); i++ {
					if w := c[i : i+9]; !strings.ContainsAny(w, "-_ \n") && strings.Contains(out, w) {
						t.Fatalf("output holds %q, part of a secret", w)
					}
				}
			}
			if !strings.Contains(out, "b796****1821") {
				t.Errorf("output lacks the masked preview:\n%s", out)
			}
		})
	}
}

func TestMask(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "****"},
		{"short", "abc", "****"},
		{"seven", "abcdefg", "****"},
		{"eight", "abcdefgh", "a****h"},
		{"sixteen", "0123456789abcdef", "01****ef"},
		{"long", "0123456789abcdefghijklmnopqrstuvwxyz", "0123****wxyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scan.Mask(tc.in); got != tc.want {
				t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		lens []int
		want []string
	}{
		{"quoted", `KEY="abcdefgh"`, []int{8}, []string{"abcdefgh"}},
		{"query", `u?t=abcdefgh&x=1`, []int{8}, []string{"abcdefgh"}},
		{"padded base64", `P=YWJjZA== end`, []int{8}, []string{"YWJjZA=="}},
		{"punctuation inside", `k: ab/cd+ef`, []int{8}, []string{"ab/cd+ef"}},
		{"not inside a word", `xabcdefghx`, []int{8}, nil},
		{"whitespace splits", "abcd efgh", []int{9}, nil},
		{"no wanted lengths", "abcdefgh", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max := 0
			for _, n := range tc.lens {
				if n > max {
					max = n
				}
			}
			wanted := make([]bool, max+1)
			for _, n := range tc.lens {
				wanted[n] = true
			}
			var got []string
			scan.Candidates([]byte(tc.line), wanted, func(a, e int) { got = append(got, tc.line[a:e]) })
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					t.Errorf("candidates %q lack %q", got, w)
				}
			}
			if tc.want == nil && len(got) != 0 {
				t.Errorf("candidates = %q, want none", got)
			}
		})
	}
}

func TestBaselineSuppresses(t *testing.T) {
	s := newScanner(t, true)
	ctx := context.Background()
	dir := filepath.Join("testdata", "corpus", "planted")
	rep, err := s.ScanPaths(ctx, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := scan.WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range canaries() {
		if strings.Contains(js.String(), c) {
			t.Fatal("baseline holds a secret")
		}
	}
	b, err := scan.ParseBaseline(&js)
	if err != nil {
		t.Fatal(err)
	}
	n := len(rep.Findings)
	rep2, err := s.ScanPaths(ctx, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	rep2.Suppress(b)
	if len(rep2.Findings) != 0 || rep2.Suppressed != n {
		t.Errorf("after baseline: %d findings, %d suppressed; want 0, %d", len(rep2.Findings), rep2.Suppressed, n)
	}

	// A known secret in a new file is a new finding.
	tmp := t.TempDir()
	data, err := os.ReadFile(filepath.Join(dir, "deploy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "copy.sh"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep3, err := s.ScanPaths(ctx, []string{tmp})
	if err != nil {
		t.Fatal(err)
	}
	rep3.Suppress(b)
	if len(rep3.Findings) != 2 {
		t.Errorf("copied file: %d findings, want 2", len(rep3.Findings))
	}
}

func TestParseBaselineRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not json", "hello"},
		{"wrong version", `{"version":2,"findings":[]}`},
		{"no fingerprint", `{"version":1,"findings":[{"file":"a"}]}`},
		{"gitleaks report", `[{"RuleID":"x","Fingerprint":"a:b:1"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := scan.ParseBaseline(strings.NewReader(tc.in)); !errors.Is(err, scan.ErrBadBaseline) {
				t.Errorf("err = %v, want ErrBadBaseline", err)
			}
		})
	}
}

// TestSARIFStructure asserts the properties SARIF 2.1.0 requires of what
// we emit (sarifLog: version, runs; run: tool; tool: driver; driver: name;
// result: message with text; locations with artifactLocation.uri and
// region.startLine >= 1; ruleIndex pointing at the matching rule).
func TestSARIFStructure(t *testing.T) {
	s := newScanner(t, true)
	rep, err := s.ScanPaths(context.Background(), []string{filepath.Join("testdata", "corpus")})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*scan.Report{rep, {Version: scan.ReportVersion}} {
		var b bytes.Buffer
		if err := scan.WriteSARIF(&b, r); err != nil {
			t.Fatal(err)
		}
		var log map[string]any
		if err := json.Unmarshal(b.Bytes(), &log); err != nil {
			t.Fatal(err)
		}
		if log["version"] != "2.1.0" {
			t.Errorf("version = %v", log["version"])
		}
		if sch, _ := log["$schema"].(string); !strings.HasSuffix(sch, "sarif-schema-2.1.0.json") {
			t.Errorf("$schema = %q", sch)
		}
		runs, ok := log["runs"].([]any)
		if !ok || len(runs) != 1 {
			t.Fatalf("runs = %v", log["runs"])
		}
		run := runs[0].(map[string]any)
		driver := run["tool"].(map[string]any)["driver"].(map[string]any)
		if driver["name"] != "keystile" {
			t.Errorf("driver.name = %v", driver["name"])
		}
		rules := driver["rules"].([]any)
		results, ok := run["results"].([]any)
		if !ok || len(results) != len(r.Findings) {
			t.Fatalf("results = %d, want %d", len(results), len(r.Findings))
		}
		for _, x := range results {
			res := x.(map[string]any)
			msg := res["message"].(map[string]any)
			if txt, _ := msg["text"].(string); txt == "" {
				t.Error("result without message.text")
			}
			lvl := res["level"]
			if lvl != "error" && lvl != "warning" && lvl != "note" && lvl != "none" {
				t.Errorf("level = %v", lvl)
			}
			idx := int(res["ruleIndex"].(float64))
			if idx < 0 || idx >= len(rules) || rules[idx].(map[string]any)["id"] != res["ruleId"] {
				t.Errorf("ruleIndex %d does not point at %v", idx, res["ruleId"])
			}
			locs := res["locations"].([]any)
			pl := locs[0].(map[string]any)["physicalLocation"].(map[string]any)
			if uri, _ := pl["artifactLocation"].(map[string]any)["uri"].(string); uri == "" {
				t.Error("location without uri")
			}
			if line := pl["region"].(map[string]any)["startLine"].(float64); line < 1 {
				t.Errorf("startLine = %v", line)
			}
		}
	}
}

// git runs git in dir with a fixed identity and no global config.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func newRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	git(t, dir, "config", "user.name", "Test")
	git(t, dir, "config", "user.email", "test@example.invalid")
	git(t, dir, "config", "commit.gpgsign", "false")
	return dir
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestGitHistory: a secret committed and then removed is still found in
// history, with its commit; vault values and tokens too.
func TestGitHistory(t *testing.T) {
	dir := newRepo(t)
	write(t, filepath.Join(dir, "README"), "hello\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "first")
	write(t, filepath.Join(dir, "bot.env"), "# bot\nTOKEN=kst_live_Wo6QcJrnqWtgLeQ5c8kVhXE1TIqAsVaczUmRfRbdifV4EC7oa\nAPP="+heldValues["betfair"]["app_key"]+"\nGH=ghp_PJnjQSHxhJVsxSz89WTRvK8YxiRiX2SOhSGP\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "oops")
	git(t, dir, "rm", "-q", "bot.env")
	git(t, dir, "commit", "-q", "-m", "remove")

	s := newScanner(t, true)
	ctx := context.Background()
	rep, err := s.ScanPaths(ctx, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 {
		t.Errorf("work tree: %q", keysOf(rep, ""))
	}
	rep, err = s.ScanGit(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := keysOf(rep, "")
	want := []string{"bot.env:2 kst-token keystile-token", "bot.env:3 vault vault-value:betfair.app_key", "bot.env:4 gitleaks github-pat"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("history findings\n got %q\nwant %q", got, want)
	}
	for _, f := range rep.Findings {
		if len(f.Commit) != 40 {
			t.Errorf("finding without commit: %+v", f)
		}
	}

	if _, err := s.ScanGit(ctx, t.TempDir()); !errors.Is(err, scan.ErrNotGitRepo) {
		t.Errorf("non-repo: err = %v, want ErrNotGitRepo", err)
	}
}

// TestStaged: only what is staged counts, as a pre-commit hook needs.
func TestStaged(t *testing.T) {
	dir := newRepo(t)
	write(t, filepath.Join(dir, "README"), "hello\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "first")
	s := newScanner(t, true)
	ctx := context.Background()

	// Unstaged secret: not reported.
	write(t, filepath.Join(dir, "cfg.yaml"), "key: "+heldValues["dmarket"]["secret"]+"\n")
	rep, err := s.ScanStaged(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 {
		t.Errorf("nothing staged: %q", keysOf(rep, ""))
	}
	git(t, dir, "add", "cfg.yaml")
	write(t, filepath.Join(dir, "README"), "hello\nkst_test_lLHC33zuaCGDNryMOgDdxM8Nh8NGiQo57k9YK6f3V1v26hkia\n")
	git(t, dir, "add", "README")
	rep, err = s.ScanStaged(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := keysOf(rep, "")
	want := []string{"README:2 kst-token keystile-token", "cfg.yaml:1 vault vault-value:dmarket.secret"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("staged findings\n got %q\nwant %q", got, want)
	}
}

func TestInstallHook(t *testing.T) {
	dir := newRepo(t)
	ctx := context.Background()
	path, err := scan.InstallHook(ctx, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, ".git", "hooks", "pre-commit"); path != want {
		t.Errorf("hook path %q, want %q", path, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("hook not executable: %v", fi.Mode())
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "keystile scan --staged") {
		t.Errorf("hook script:\n%s", data)
	}
	write(t, path, "#!/bin/sh\necho mine\n")
	if _, err := scan.InstallHook(ctx, dir, false); !errors.Is(err, scan.ErrHookExists) {
		t.Errorf("second install: err = %v, want ErrHookExists", err)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "echo mine") {
		t.Error("existing hook overwritten without force")
	}
	if _, err := scan.InstallHook(ctx, dir, true); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != scan.HookScript {
		t.Error("force did not replace the hook")
	}
	if _, err := scan.InstallHook(ctx, t.TempDir(), false); !errors.Is(err, scan.ErrNotGitRepo) {
		t.Errorf("non-repo: err = %v", err)
	}
}
