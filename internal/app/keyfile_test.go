package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/masterkey"
	"github.com/keystile/keystile/internal/store/sqlite"
)

const (
	keyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"
	keyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=\n"
)

func writeKey(t *testing.T, p, k string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestResolveKeyFile: the key file a data dir uses, for every way a data
// dir gets somewhere: recorded relative (new inits), recorded absolute by
// older versions then moved or copied, kept outside on purpose, or named
// by master_key.file; two key files holding different keys are an error
// naming both.
func TestResolveKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, root, dir string) (configured, recorded string)
		want     string // relative to root; "" = error
		mismatch []string
	}{
		{"relative, wherever the dir is", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyA)
			return "", "master.key"
		}, "new/master.key", nil},
		{"nothing recorded", func(t *testing.T, root, dir string) (string, string) { return "", "" }, "new/master.key", nil},
		{"legacy absolute, dir moved", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyA)
			return "", filepath.Join(root, "old", "master.key")
		}, "new/master.key", nil},
		{"legacy absolute, dir copied (same key)", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyA)
			return "", writeKey(t, filepath.Join(root, "old", "master.key"), " "+keyA)
		}, "new/master.key", nil},
		{"legacy absolute, different keys", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyB)
			return "", writeKey(t, filepath.Join(root, "old", "master.key"), keyA)
		}, "", []string{"old/master.key", "new/master.key"}},
		{"kept outside on purpose", func(t *testing.T, root, dir string) (string, string) {
			return "", writeKey(t, filepath.Join(root, "etc", "ks.key"), keyA)
		}, "etc/ks.key", nil},
		{"configured, same file", func(t *testing.T, root, dir string) (string, string) {
			p := writeKey(t, filepath.Join(root, "etc", "ks.key"), keyA)
			return p, p
		}, "etc/ks.key", nil},
		{"configured relative to the data dir", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "keys", "k"), keyA)
			return "keys/k", "keys/k"
		}, "new/keys/k", nil},
		{"configured after the key moved", func(t *testing.T, root, dir string) (string, string) {
			return writeKey(t, filepath.Join(root, "etc", "ks.key"), keyA), "master.key"
		}, "etc/ks.key", nil},
		{"configured copy of the same key", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyA)
			return writeKey(t, filepath.Join(root, "etc", "ks.key"), keyA), "master.key"
		}, "etc/ks.key", nil},
		{"configured, different key", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyA)
			return writeKey(t, filepath.Join(root, "etc", "ks.key"), keyB), "master.key"
		}, "", []string{"new/master.key", "etc/ks.key"}},
		{"configured file missing", func(t *testing.T, root, dir string) (string, string) {
			writeKey(t, filepath.Join(dir, "master.key"), keyA)
			return filepath.Join(root, "etc", "nope.key"), "master.key"
		}, "", []string{"new/master.key", "etc/nope.key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "new")
			configured, recorded := tc.setup(t, root, dir)
			got, err := app.ResolveKeyFile(dir, configured, recorded)
			if tc.want == "" {
				if !errors.Is(err, app.ErrKeyFileMismatch) {
					t.Fatalf("ResolveKeyFile = %q, %v; want a mismatch", got, err)
				}
				for _, p := range tc.mismatch {
					if !strings.Contains(err.Error(), filepath.Join(root, p)) {
						t.Errorf("error %q does not name %s", err, p)
					}
				}
				for _, k := range []string{keyA, keyB} {
					if strings.Contains(err.Error(), strings.TrimSpace(k)) {
						t.Errorf("error quotes a key: %q", err)
					}
				}
				return
			}
			if err != nil || got != filepath.Join(root, tc.want) {
				t.Fatalf("ResolveKeyFile = %q, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestInitRecordsKeyRelative: init records the key file relative to the
// data dir, so that the database names no absolute path.
func TestInitRecordsKeyRelative(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, app.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pj, err := db.Vault().Meta(ctx, "master_key")
	if err != nil {
		t.Fatal(err)
	}
	var p masterkey.Params
	if err := json.Unmarshal(pj, &p); err != nil || p.Source != "file" || p.KeyFile != "master.key" {
		t.Fatalf("recorded %s (%v); want key_file master.key", pj, err)
	}
	// A key kept outside is recorded as it is.
	out := filepath.Join(t.TempDir(), "elsewhere.key")
	cfg := config.Default()
	cfg.MasterKey.File = out
	dir2 := filepath.Join(t.TempDir(), "data")
	res, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir2, Config: cfg})
	if err != nil || res.KeyFile != out {
		t.Fatalf("init with an outside key file: %+v %v", res, err)
	}
}
