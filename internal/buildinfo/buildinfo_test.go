package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-03T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
		{Key: "GOOS", Value: "linux"},
		{Key: "GOARCH", Value: "arm64"},
	}
	tests := []struct {
		name      string
		bi        *debug.BuildInfo
		version   string
		want      string // Version
		wantShort string
	}{
		{"no build info", nil, "0.1.0-dev", "0.1.0-dev", "keystile 0.1.0-dev (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"},
		{"devel checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/keystile/keystile", Version: "(devel)"}, Settings: vcs},
			"0.1.0-dev", "0.1.0-dev", "keystile 0.1.0-dev (rev 0123456789ab, dirty, 2026-12-03T10:00:00Z; go1.26.8 linux/arm64)"},
		{"go install @tag", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/keystile/keystile", Version: "v1.2.3"}},
			"0.1.0-dev", "v1.2.3", "keystile v1.2.3 (go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + ")"},
		{"ldflags stamp wins", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/keystile/keystile", Version: "v1.2.3"}},
			"1.3.0-rc1", "1.3.0-rc1", "keystile 1.3.0-rc1 (go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := From(tt.bi, tt.version, "0.1.0-dev")
			if i.Version != tt.want {
				t.Errorf("Version = %q, want %q", i.Version, tt.want)
			}
			if got := i.Short(); got != tt.wantShort {
				t.Errorf("Short = %q, want %q", got, tt.wantShort)
			}
		})
	}
}

func TestJSONKeys(t *testing.T) {
	m := true
	b, err := json.Marshal(Info{Version: "v", Module: "m", ModuleVersion: "mv", Revision: "r", Time: "t", Modified: &m, GoVersion: "g", OS: "o", Arch: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"version"`, `"module"`, `"module_version"`, `"vcs_revision"`, `"vcs_time"`, `"vcs_modified":true`, `"go_version"`, `"goos"`, `"goarch"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("%s lacks %s", b, k)
		}
	}
	clean := false
	b, _ = json.Marshal(Info{Modified: &clean})
	if !strings.Contains(string(b), `"vcs_modified":false`) {
		t.Errorf("a clean tree must say so: %s", b)
	}
}
