package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
)

// runServer starts serve on dir with cfg (gateway on a free port) until
// the test ends, and returns it and its admin client.
func runServer(t *testing.T, env Env, dir string, cfg *config.Config, o ServerOptions) (*Server, *admin.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Gateway.Listen = "127.0.0.1:0"
	o.DataDir, o.Config = dir, cfg
	if o.Logger == nil {
		o.Logger = logging.New(io.Discard, logging.Options{})
	}
	srv, err := NewServer(ctx, env, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c, err := admin.NewClient(filepath.Join(dir, SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := c.Status(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never answered")
		}
	}
	return srv, c
}

// readyz fetches /-/readyz and decodes its store health.
func readyz(t *testing.T, addr string) (int, StoreHealth) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/-/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string      `json:"status"`
		Store  StoreHealth `json:"store"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &body); err != nil || body.Status != "ready" {
			t.Fatalf("readyz body %s: %v", b, err)
		}
	}
	return resp.StatusCode, body.Store
}

// TestReadyzAndStatusSQLite: the embedded store reports itself as such.
func TestReadyzAndStatusSQLite(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "d")
	if _, err := Init(context.Background(), Env{}, InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	srv, c := runServer(t, Env{}, dir, config.Default(), ServerOptions{})
	code, h := readyz(t, srv.GatewayAddr())
	if code != http.StatusOK || h != (StoreHealth{Backend: BackendSQLite}) {
		t.Fatalf("readyz = %d %+v", code, h)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Store == nil || st.Store.Backend != BackendSQLite || st.Store.Path != filepath.Join(dir, DBFile) || st.Store.Redis != nil || st.Store.SchemaVersion == 0 {
		t.Fatalf("status store = %+v", st.Store)
	}
}

// shortTempDir is a temporary directory with a short path (unix socket
// paths are limited to 108 bytes).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return strings.TrimSuffix(d, "/")
}

// TestBackupRefusesPostgres: keystile backup covers the embedded store;
// with PostgreSQL it says to use the database's own tools.
func TestBackupRefusesPostgres(t *testing.T) {
	cfg := config.Default()
	cfg.Store.Postgres.DSN = "env:KST_NOT_USED"
	_, err := Backup(context.Background(), BackupOptions{DataDir: t.TempDir(), Config: cfg, Archive: filepath.Join(t.TempDir(), "b.tgz")})
	if err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup with store.postgres: %v", err)
	}
}

// TestOpenStoresDSNNeverInErrors: a DSN that cannot be used is reported
// by its reference, never by its value.
func TestOpenStoresDSNNeverInErrors(t *testing.T) {
	const canary = "pw-CANARY-8842"
	cfg := config.Default()
	cfg.Store.Postgres.DSN = "env:KST_TEST_BAD_DSN"
	for _, dsn := range []string{"", "postgres://app:" + canary + "@127.0.0.1:1/k?sslmode=disable&connect_timeout=1", "host=127.0.0.1 port=1 password=" + canary + " sslmode=disable connect_timeout=1", "::not a dsn " + canary} {
		env := Env{Getenv: func(k string) string {
			if k == "KST_TEST_BAD_DSN" {
				return dsn
			}
			return ""
		}}
		_, err := OpenStores(context.Background(), env, cfg, t.TempDir(), StoreOptions{})
		if err == nil || strings.Contains(err.Error(), canary) {
			t.Fatalf("DSN %q: error %v", dsn, err)
		}
		if dsn == "" && !strings.Contains(err.Error(), "env:KST_TEST_BAD_DSN") {
			t.Fatalf("an unset reference is not named: %v", err)
		}
	}
}
