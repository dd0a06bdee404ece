package sandboxconf_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/sandbox/sandboxconf"
)

func info(base int, names ...string) sandbox.Info {
	in := sandbox.Info{Venues: map[string]sandbox.VenueInfo{}}
	for _, n := range names {
		u := fmt.Sprintf("http://127.0.0.1:%d", sandbox.Port(base, n))
		vi := sandbox.VenueInfo{BaseURL: u, Credentials: map[string]string{"api_key": "k-" + n}}
		if n == sandbox.VenueBetfair {
			vi.IdentityURL = u
		}
		in.Venues[n] = vi
	}
	return in
}

func venues(t *testing.T, base int, names ...string) []sandboxconf.Venue {
	t.Helper()
	vs, err := sandboxconf.Venues(info(base, names...))
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// decode returns the file's top-level mapping.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("result is not YAML: %v\n%s", err, b)
	}
	return m
}

const starter = `# keystile configuration.
log:
  level: info   # keep
gateway:
  listen: 127.0.0.1:7878
# venues:
#   dmarket:
#     type: dmarket
`

const withVenues = `log:
  level: info
venues:
    # my real one
    binance:
        type: binance
        credential: binance-main
        base_url: https://api.binance.com

    dm:
        type: dmarket
        credential: dm
        base_url: https://api.dmarket.com   # trailing comment
# policies follow
policies:
  p:
    venues: [binance]
`

func TestMerge(t *testing.T) {
	all := venues(t, 7880, sandbox.AllVenues()...)
	for _, tc := range []struct {
		name    string
		file    string
		vs      []sandboxconf.Venue
		force   bool
		err     error
		changes string
		keep    []string // substrings the result must still hold
	}{
		{"empty file", "", all, false, nil, "stake:added", nil},
		{"starter file", starter, all, false, nil, "coinbase:added", []string{starter}},
		{"no final newline", "log:\n  level: info", venues(t, 7880, "okx"), false, nil, "okx:added", []string{"log:\n  level: info\n"}},
		{"null venues", "venues:\npolicies: {}\n", venues(t, 7880, "okx"), false, nil, "okx:added", []string{"policies: {}"}},
		{"next to other venues", withVenues, venues(t, 7880, "okx", "kraken"), false, nil, "kraken:added okx:added",
			[]string{"    # my real one\n    binance:\n        type: binance\n", "https://api.dmarket.com   # trailing comment\n", "# policies follow\npolicies:\n  p:\n    venues: [binance]\n"}},
		{"conflict", withVenues, venues(t, 7880, "okx", "binance"), false, sandboxconf.ErrExists, "", nil},
		{"forced", withVenues, venues(t, 7880, "okx", "binance"), true, nil, "binance:replaced okx:added",
			[]string{"dm:\n        type: dmarket", "# policies follow\npolicies:"}},
		{"flow venues", "venues: {a: {type: x}}\n", all, false, sandboxconf.ErrLayout, "", nil},
		{"venues a list", "venues:\n  - a\n", all, false, sandboxconf.ErrLayout, "", nil},
		{"null on the line", "venues: ~\n", all, false, sandboxconf.ErrLayout, "", nil},
		{"two documents", "a: 1\n---\nb: 2\n", all, false, sandboxconf.ErrLayout, "", nil},
		{"not a mapping", "- a\n- b\n", all, false, sandboxconf.ErrLayout, "", nil},
		{"not YAML", "a: [\n", all, false, sandboxconf.ErrLayout, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changes, err := sandboxconf.Merge([]byte(tc.file), tc.vs, tc.force)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if errors.Is(err, sandboxconf.ErrExists) && !strings.Contains(err.Error(), "binance") {
					t.Errorf("the error does not name the venue: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, c.ID+":"+string(c.Action))
			}
			if !strings.Contains(strings.Join(got, " "), tc.changes) {
				t.Errorf("changes %q, want %q", got, tc.changes)
			}
			for _, k := range tc.keep {
				if !strings.Contains(string(out), k) {
					t.Errorf("lost %q:\n%s", k, out)
				}
			}
			m := decode(t, out)
			vm, _ := m["venues"].(map[string]any)
			for _, v := range tc.vs {
				e, _ := vm[v.ID].(map[string]any)
				if e == nil || e["credential"] != v.Credential || e["sandbox"] != true {
					t.Errorf("venues.%s = %v", v.ID, vm[v.ID])
				}
			}
			// The result is a valid keystile configuration.
			p := filepath.Join(t.TempDir(), "keystile.yaml")
			if err := os.WriteFile(p, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(p); err != nil {
				t.Errorf("config.Load: %v\n%s", err, out)
			}
			// Merging again changes nothing.
			again, changes, err := sandboxconf.Merge(out, tc.vs, false)
			if err != nil || string(again) != string(out) {
				t.Errorf("second merge: %v\n%s", err, again)
			}
			for _, c := range changes {
				if c.Action != sandboxconf.Unchanged {
					t.Errorf("second merge: %s %s", c.ID, c.Action)
				}
			}
		})
	}
}

// TestMergeOtherPortBase: the same venues on other ports are other settings.
func TestMergeOtherPortBase(t *testing.T) {
	out, _, err := sandboxconf.Merge(nil, venues(t, 7880, "binance"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sandboxconf.Merge(out, venues(t, 9000, "binance"), false); !errors.Is(err, sandboxconf.ErrExists) {
		t.Fatalf("err = %v", err)
	}
}

func TestVenuesRefusesTLS(t *testing.T) {
	in := info(7880, "binance")
	vi := in.Venues["binance"]
	vi.BaseURL = "https://127.0.0.1:7885"
	in.Venues["binance"] = vi
	if _, err := sandboxconf.Venues(in); err == nil {
		t.Fatal("TLS emulator accepted")
	}
}

// FuzzMerge: Merge never panics; when it succeeds the result is YAML that
// holds every venue with its settings, and every other top-level key of
// the original keeps its value.
func FuzzMerge(f *testing.F) {
	f.Add(starter, false)
	f.Add(withVenues, true)
	f.Add("venues:\n", false)
	f.Add("a: &x 1\nb: *x\nvenues:\n  z: {type: y}\n", true)
	vs, err := sandboxconf.Venues(info(7880, "okx", "binance"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, file string, force bool) {
		if len(file) > 4096 {
			return
		}
		out, _, err := sandboxconf.Merge([]byte(file), vs, force)
		if err != nil {
			return
		}
		var before, after map[string]any
		if yaml.Unmarshal([]byte(file), &before) != nil {
			return // the parser and the decoder disagree on odd input; only what decodes is checked
		}
		if err := yaml.Unmarshal(out, &after); err != nil {
			t.Fatalf("result does not decode: %v\n%q\n->\n%q", err, file, out)
		}
		for k, v := range before {
			if k != "venues" && !reflect.DeepEqual(after[k], v) {
				t.Fatalf("key %q changed: %v -> %v\n%q\n->\n%q", k, v, after[k], file, out)
			}
		}
		vm, _ := after["venues"].(map[string]any)
		for _, v := range vs {
			if e, _ := vm[v.ID].(map[string]any); e == nil || e["credential"] != v.Credential {
				t.Fatalf("venues.%s missing\n%q\n->\n%q", v.ID, file, out)
			}
		}
	})
}
