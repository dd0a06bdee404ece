package app_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/app"
)

// member is one tar entry of a hand-made archive.
type member struct {
	name string
	typ  byte
	body []byte
}

// makeArchive builds a gzip'd tar of the given members.
func makeArchive(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, m := range ms {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Mode: 0o600, Typeflag: typ, Size: int64(len(m.body)), ModTime: time.Unix(0, 0)}
		if typ != tar.TypeReg {
			h.Size, h.Linkname = 0, "/etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifestFor describes members as a manifest would.
func manifestFor(t testing.TB, ms ...member) member {
	t.Helper()
	m := app.BackupManifest{Format: app.BackupFormat, MasterKey: app.BackupKey{Source: "file", KeyFile: "master.key"}}
	for _, x := range ms {
		sum := sha256.Sum256(x.body)
		m.Files = append(m.Files, app.BackupFile{Name: x.name, Size: int64(len(x.body)), SHA256: hex.EncodeToString(sum[:])})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return member{name: app.ManifestFile, body: b}
}

// TestReadBackupRefuses: anything but a well-formed archive whose members
// match its manifest is refused, and nothing is written outside the
// target directory.
func TestReadBackupRefuses(t *testing.T) {
	db := member{name: app.DBFile, body: []byte("SQLite format 3\x00 pretend")}
	audit := member{name: app.AuditDBFile, body: []byte("audit")}
	tampered := member{name: app.DBFile, body: []byte("SQLite format 3\x00 tampered")}
	bigger := manifestFor(t, db)
	included := manifestFor(t, db)
	included.body = bytes.Replace(included.body, []byte(`"included":false`), []byte(`"included":true`), 1)
	unknownField := manifestFor(t, db)
	unknownField.body = bytes.Replace(unknownField.body, []byte(`{"format"`), []byte(`{"extra":1,"format"`), 1)
	for _, tc := range []struct {
		name    string
		archive []byte
	}{
		{"not gzip", []byte("plain bytes")},
		{"empty tar", makeArchive(t)},
		{"manifest not first", makeArchive(t, db, manifestFor(t, db))},
		{"no database", makeArchive(t, manifestFor(t, audit), audit)},
		{"digest mismatch", makeArchive(t, manifestFor(t, db), tampered)},
		{"member missing", makeArchive(t, manifestFor(t, db, audit), db)},
		{"member not listed", makeArchive(t, manifestFor(t, db), db, audit)},
		{"member twice", makeArchive(t, manifestFor(t, db), db, db)},
		{"path traversal", makeArchive(t, manifestFor(t, db, member{name: "../escape", body: []byte("x")}), db, member{name: "../escape", body: []byte("x")})},
		{"symlink", makeArchive(t, manifestFor(t, db), db, member{name: app.AuditDBFile, typ: tar.TypeSymlink})},
		{"size mismatch", makeArchive(t, bigger, member{name: app.DBFile, body: append(append([]byte(nil), db.body...), 'x')})},
		{"claims to hold the key", makeArchive(t, included, db)},
		{"unknown manifest field", makeArchive(t, unknownField, db)},
		{"master key member", makeArchive(t, manifestFor(t, db, member{name: app.KeyFile, body: []byte("k")}), db, member{name: app.KeyFile, body: []byte("k")})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "stage")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := app.ReadBackup(bytes.NewReader(tc.archive), dir); !errors.Is(err, app.ErrBackupArchive) {
				t.Fatalf("ReadBackup = %v, want ErrBackupArchive", err)
			}
			if _, err := os.Stat(filepath.Join(root, "escape")); err == nil {
				t.Fatal("a member escaped the directory")
			}
		})
	}
	dir := t.TempDir()
	m, err := app.ReadBackup(bytes.NewReader(makeArchive(t, manifestFor(t, db, audit), db, audit)), dir)
	if err != nil || len(m.Files) != 2 {
		t.Fatalf("a good archive: %+v %v", m, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, app.DBFile)); err != nil || !bytes.Equal(b, db.body) {
		t.Fatalf("extracted %q %v", b, err)
	}
}

// TestRestoreRefusesAnInitialisedDir: a restore never overwrites a data
// dir that has a database.
func TestRestoreRefusesAnInitialisedDir(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "b.tgz")
	if _, err := app.Backup(ctx, app.BackupOptions{DataDir: dir, Archive: archive}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Restore(ctx, app.RestoreOptions{Archive: archive, DataDir: dir, KeyFile: filepath.Join(dir, app.KeyFile)}); !errors.Is(err, app.ErrAlreadyInitialized) {
		t.Fatalf("restore over a data dir: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != app.DBFile && e.Name() != app.KeyFile && e.Name() != app.LocalCAFile {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// FuzzReadBackup: no panic; an accepted archive wrote exactly the members
// its manifest lists, of the listed sizes, and nothing else.
func FuzzReadBackup(f *testing.F) {
	db := member{name: app.DBFile, body: []byte("SQLite format 3\x00")}
	f.Add(makeArchive(f, manifestFor(f, db), db))
	f.Add(makeArchive(f, db))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		m, err := app.ReadBackup(bytes.NewReader(data), dir)
		entries, _ := os.ReadDir(dir)
		if err != nil {
			return
		}
		if len(entries) != len(m.Files) {
			t.Fatalf("accepted: %d files written, %d listed", len(entries), len(m.Files))
		}
		for _, mf := range m.Files {
			fi, err := os.Stat(filepath.Join(dir, mf.Name))
			if err != nil || fi.Size() != mf.Size || fi.Mode().Perm() != 0o600 {
				t.Fatalf("member %s: %v %v", mf.Name, fi, err)
			}
		}
	})
}

// TestBackupJSONLAuditCompleteLines: with the JSONL audit sink, the
// backup holds the log's complete lines (a record being written is left
// out) and the config of the data dir; restore puts both back.
func TestBackupJSONLAuditCompleteLines(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir, WriteYAML: true}); err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("x"), 100<<10) // longer than one scan block
	log := append(append([]byte(`{"seq":1}`+"\n"), long...), []byte("\n"+`{"seq":3,"half`)...)
	if err := os.WriteFile(filepath.Join(dir, app.AuditJSONLFile), log, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := app.LoadConfig("", func(string) string { return "" }, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audit.Sink = app.AuditSinkJSONL
	archive := filepath.Join(t.TempDir(), "b.tgz")
	res, err := app.Backup(ctx, app.BackupOptions{DataDir: dir, Config: cfg, Archive: archive})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive mode: %v %v", fi, err)
	}
	restored := filepath.Join(t.TempDir(), "r")
	if _, err := app.Restore(ctx, app.RestoreOptions{Archive: archive, DataDir: restored, KeyFile: res.KeyFile}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(restored, app.AuditJSONLFile))
	want := log[:bytes.LastIndexByte(log, '\n')+1]
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored log: %d bytes (%v), want %d", len(got), err, len(want))
	}
	if _, err := os.Stat(filepath.Join(restored, app.ConfigFile)); err != nil {
		t.Fatalf("config not restored: %v", err)
	}
}
