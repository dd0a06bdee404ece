package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/store/postgres"
)

// pgSchema is a fresh PostgreSQL schema for one test, or a skip.
func pgSchema(t *testing.T) string {
	t.Helper()
	base := os.Getenv("KEYSTILE_TEST_POSTGRES")
	if base == "" {
		t.Skip("KEYSTILE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	dsn, drop, err := postgres.TestSchema(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return dsn
}

// pgEnv is a CLI environment whose config names dsn through env:KST_PG.
func pgEnv(t *testing.T, dsn string) map[string]string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "keystile.yaml")
	if err := os.WriteFile(cfg, []byte("store:\n  postgres:\n    dsn: env:KST_PG\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"KEYSTILE_DATA_DIR": filepath.Join(t.TempDir(), "d"), "HOME": t.TempDir(),
		"KEYSTILE_CONFIG": cfg, "KST_PG": dsn}
}

func TestMigrateCommand(t *testing.T) {
	env := pgEnv(t, pgSchema(t))
	code, out, stderr := run(t, env, "", "migrate", "--json")
	if code != ExitOK {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	var res app.MigrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	latest := postgres.Latest()
	if res.FromVersion != 0 || res.Version != latest || len(res.Applied) != latest || res.Applied[0] != 1 || res.Applied[latest-1] != latest {
		t.Fatalf("first run = %+v, want versions 1..%d applied", res, latest)
	}
	if strings.Contains(out, "KST_PG") || !strings.Contains(res.Database, "127.0.0.1") {
		t.Fatalf("database = %q", res.Database)
	}
	code, out, stderr = run(t, env, "", "migrate")
	if code != ExitOK || !strings.Contains(out, "up to date") {
		t.Fatalf("second run: exit %d: %s%s", code, out, stderr)
	}
	code, out, _ = run(t, env, "", "migrate", "--json")
	if code != ExitOK || !strings.Contains(out, `"applied": []`) {
		t.Fatalf("third run --json: %s", out)
	}
}

// TestMigrateConcurrentRuns: replicas running migrate at once apply each
// migration once between them, and none fails.
func TestMigrateConcurrentRuns(t *testing.T) {
	env := pgEnv(t, pgSchema(t))
	const n = 4
	var wg sync.WaitGroup
	outs := make([]string, n)
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], outs[i], _ = run(t, env, "", "migrate", "--json")
		}()
	}
	wg.Wait()
	var all []int
	for i := range n {
		if codes[i] != ExitOK {
			t.Fatalf("run %d: exit %d: %s", i, codes[i], outs[i])
		}
		var res app.MigrateResult
		if err := json.Unmarshal([]byte(outs[i]), &res); err != nil {
			t.Fatal(err)
		}
		all = append(all, res.Applied...)
	}
	slices.Sort(all)
	if latest := postgres.Latest(); len(all) != latest || all[0] != 1 || all[latest-1] != latest {
		t.Fatalf("applied between the runs: %v, want each of 1..%d once", all, latest)
	}
}

func TestMigrateUsage(t *testing.T) {
	const canary = "CANARY-pw-5150"
	env := map[string]string{"KEYSTILE_DATA_DIR": filepath.Join(t.TempDir(), "d"), "HOME": t.TempDir()}
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"sqlite install", []string{"migrate"}, "store.postgres.dsn is not set"},
		{"to without from", []string{"migrate", "--to", "postgres"}, "--to goes with --from"},
		{"from not sqlite", []string{"migrate", "--from", "/var/lib/keystile", "--to", "postgres"}, "--from must be sqlite:DIR"},
		{"from without to", []string{"migrate", "--from", "sqlite:/x"}, "--from needs --to"},
		{"to postgres without config", []string{"migrate", "--from", "sqlite:/x", "--to", "postgres"}, "--to postgres needs store.postgres.dsn"},
		{"literal dsn", []string{"migrate", "--from", "sqlite:/x", "--to", "postgres://app:" + canary + "@db/k"}, "never the DSN itself"},
		{"vault reference", []string{"migrate", "--from", "sqlite:/x", "--to", "vault:pg#dsn"}, "a secret reference to the DSN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := run(t, env, "", tt.args...)
			if code != ExitUsage || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, ExitUsage, tt.msg)
			}
			if strings.Contains(stderr+out, canary) {
				t.Fatalf("the DSN's password was echoed: %s", stderr)
			}
		})
	}
}
