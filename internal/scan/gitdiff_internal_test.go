package scan

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zricethezav/gitleaks/v8/cmd/scm"
	"github.com/zricethezav/gitleaks/v8/sources"
)

func runGit(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestGitHistoryAgreesWithGitleaks: over a history with renames, spaces,
// quoted names, a line without a final newline, an added line that looks
// like a diff header, a binary file and a deletion, ScanGit's rule findings
// (file, commit, line, rule) are exactly those gitleaks reports for the
// same repository with its git source.
func TestGitHistoryAgreesWithGitleaks(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	runGit(t, dir, "init", "-q")
	runGit(t, dir, "config", "user.name", "T")
	runGit(t, dir, "config", "user.email", "t@example.invalid")
	runGit(t, dir, "config", "commit.gpgsign", "false")
	gh := "ghp_PJnjQSHxhJVsxSz89WTRvK8YxiRiX2SOhSGP"
	files := []map[string]string{
		{"a b.env": "x=1\nGH=" + gh + "\n", "bin.dat": "\x00\x01" + gh, "plain.txt": "aws_access_key_id = AKIA2MATW2ZCEFAQJ4B6"},
		{"a b.env": "x=1\nGH=" + gh + "\nSLACK=xoxb-341249418786-5565661048021-v6hxtDgugvQxyhfkdlqsH4Bd\n", "tab\tq\"\u00e9.txt": "++ token " + gh + "\n+commit " + gh + "\n"},
		{"c d.env": "x=1\nGH=" + gh + "\nSLACK=xoxb-341249418786-5565661048021-v6hxtDgugvQxyhfkdlqsH4Bd\n"},
		{"plain.txt": "no secret\n"},
	}
	for i, fs := range files {
		if i == 2 {
			runGit(t, dir, "mv", "a b.env", "c d.env")
		}
		for name, data := range fs {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		runGit(t, dir, "add", "-A")
		runGit(t, dir, "commit", "-q", "-m", fmt.Sprintf("c%d", i))
	}
	ctx := context.Background()
	s, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.ScanGit(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rep.Findings {
		if f.Detector == DetectorGitleaks {
			got = append(got, fmt.Sprintf("%s %s:%d %s", f.Commit, f.File, f.Line, f.Rule))
		}
	}
	slices.Sort(got)

	ref := reference(t)
	cmd, err := sources.NewGitLogCmdContext(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	src := &sources.Git{Cmd: cmd, Config: &ref.Config, Remote: sources.NewRemoteInfoContext(ctx, scm.NoPlatform, dir), Sema: ref.Sema}
	ms, err := ref.DetectSource(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range ms {
		want = append(want, fmt.Sprintf("%s %s:%d %s", m.Commit, m.File, m.StartLine, m.RuleID))
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if len(want) < 4 || !slices.Equal(got, want) {
		t.Errorf("ScanGit:\n %s\ngitleaks:\n %s", strings.Join(got, "\n "), strings.Join(want, "\n "))
	}
}

func TestParseDiff(t *testing.T) {
	type hunk struct {
		commit, path string
		line         int
		added        string
	}
	for _, tc := range []struct {
		name, in string
		want     []hunk
		bad      bool
	}{
		{"log with two commits", "commit aaa\n\ndiff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1,2 @@\n+one\n+two\ncommit bbb\n\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -2 +2,0 @@\n-two\n@@ -5,0 +7 @@ func\n+seven\n",
			[]hunk{{"aaa", "x", 1, "one\ntwo\n"}, {"bbb", "x", 7, "seven\n"}}, false},
		{"header-like content", "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,0 +1,3 @@\n++++ b/y\n+commit zzz\n+@@ -1 +1 @@\n",
			[]hunk{{"", "x", 1, "+++ b/y\ncommit zzz\n@@ -1 +1 @@\n"}}, false},
		{"no newline at end", "diff --git a/x b/x\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+last\n\\ No newline at end of file\n",
			[]hunk{{"", "x", 1, "last"}}, false},
		{"removed line without newline", "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+new\n",
			[]hunk{{"", "x", 1, "new\n"}}, false},
		{"quoted name", "diff --git \"a/t\\tq\\\"\\303\\251\" \"b/t\\tq\\\"\\303\\251\"\n--- /dev/null\n+++ \"b/t\\tq\\\"\\303\\251\"\n@@ -0,0 +1 @@\n+v\n",
			[]hunk{{"", "t\tq\"\u00e9", 1, "v\n"}}, false},
		{"space in name", "diff --git a/a b b/a b\n--- /dev/null\n+++ b/a b\t\n@@ -0,0 +1 @@\n+v\n", []hunk{{"", "a b", 1, "v\n"}}, false},
		{"binary and deleted", "diff --git a/b b/b\nBinary files /dev/null and b/b differ\ndiff --git a/d b/d\n--- a/d\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n", nil, false},
		{"truncated hunk", "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,3 @@\n+a\n", []hunk{{"", "x", 1, "a\n"}}, false},
		{"hunk ends early", "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,3 @@\n+a\ndiff --git a/y b/y\n", nil, true},
		{"malformed header", "diff --git a/x b/x\n+++ b/x\n@@ -a +1 @@\n", nil, true},
		{"bad quoted path", "+++ \"b/x\n", nil, true},
		{"path without prefix", "+++ x\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []hunk
			err := ParseDiff(strings.NewReader(tc.in), func(c, p string, l int, a string) error {
				got = append(got, hunk{c, p, l, a})
				return nil
			})
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, want error %v", err, tc.bad)
			}
			if !tc.bad && !slices.Equal(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseDiff: never panics, and every added line it reports is in the
// input as a "+" line.
func FuzzParseDiff(f *testing.F) {
	f.Add("commit aaa\ndiff --git a/x b/x\n--- /dev/null\n+++ b/x\n@@ -0,0 +1,2 @@\n+one\n+two\n\\ No newline at end of file\n")
	f.Add("+++ \"b/\\303\\251\"\n@@ -1,2 +1 @@ x\n-a\n-b\n+c\n@@ -9 +9,0 @@\n-z\n")
	f.Add("@@ -0,0 +99999999999999999999 @@\n")
	f.Fuzz(func(t *testing.T, in string) {
		_ = ParseDiff(strings.NewReader(in), func(_, path string, line int, added string) error {
			if path == "" || line < 0 {
				t.Fatalf("hunk with path %q line %d", path, line)
			}
			for _, l := range strings.SplitAfter(added, "\n") {
				if l != "" && !strings.Contains(in, "+"+l) {
					t.Fatalf("added line %q not in the input", l)
				}
			}
			return nil
		})
	})
}
