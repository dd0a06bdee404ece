package cli

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/app"
)

func TestVersion(t *testing.T) {
	env := map[string]string{"HOME": t.TempDir()}
	want := "keystile " + app.Build().Version + " ("
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		code, out, stderr := run(t, env, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		if !strings.HasPrefix(out, want) || !strings.HasSuffix(out, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+")\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: %q, want one line %q...%s", args, out, want, runtime.Version())
		}
	}
	code, out, stderr := run(t, env, "", "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("version --json: %v: %s", err, out)
	}
	for k, v := range map[string]string{"version": app.Build().Version, "go_version": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH} {
		if got[k] != v {
			t.Errorf("version --json: %s = %v, want %q (%s)", k, got[k], v, out)
		}
	}
	// demo keeps its own -v (verbose): only the root's -v is --version.
	if code, _, stderr := run(t, env, "", "demo", "--help"); code != 0 || strings.Contains(stderr, "version") {
		t.Fatalf("demo --help: %d %s", code, stderr)
	}
}
