package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/app"
)

// TestMigrateFromSQLiteCommand: keystile migrate --from sqlite:DIR --to
// env:VAR copies an embedded install; the same data dir then runs on
// PostgreSQL (its master key file stays where it was).
func TestMigrateFromSQLiteCommand(t *testing.T) {
	dsn := pgSchema(t)
	dir := filepath.Join(t.TempDir(), "d")
	sqlite := map[string]string{"KEYSTILE_DATA_DIR": dir, "HOME": t.TempDir()}
	if code, _, stderr := run(t, sqlite, "", "init"); code != ExitOK {
		t.Fatalf("init: %s", stderr)
	}
	pg := pgEnv(t, dsn)
	pg["KEYSTILE_DATA_DIR"] = dir
	code, out, stderr := run(t, pg, "", "migrate", "--from", "sqlite:"+dir, "--to", "env:KST_PG", "--json")
	if code != ExitOK {
		t.Fatalf("migrate --from: exit %d: %s", code, stderr)
	}
	var res app.CopyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	rows := map[string]int64{}
	for _, tc := range res.Tables {
		rows[tc.Table] = tc.Rows
	}
	if res.From != dir || rows["vault_meta"] == 0 || rows["vault_keks"] != 1 || !strings.Contains(out, `"rows"`) {
		t.Fatalf("copy = %s", out)
	}
	// The install now opens on PostgreSQL (the SQLite file moved away):
	// the local CA's key, sealed in the vault, is read with the master
	// key from the data dir.
	if err := os.Rename(filepath.Join(dir, app.DBFile), filepath.Join(dir, "old.db")); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = run(t, pg, "", "ca", "show", "--json")
	if code != ExitOK || !strings.Contains(out, `"sha256"`) || !strings.Contains(out, `"key_version": 1`) {
		t.Fatalf("ca show on PostgreSQL: exit %d: %s%s", code, out, stderr)
	}
	// A second copy is refused: the database is no longer empty.
	if err := os.Rename(filepath.Join(dir, "old.db"), filepath.Join(dir, app.DBFile)); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, pg, "", "migrate", "--from", "sqlite:"+dir, "--to", "postgres")
	if code != ExitFailure || !strings.Contains(stderr, "already holds keystile data") {
		t.Fatalf("second copy: exit %d: %s", code, stderr)
	}
}
