//go:build keystile_pg

package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// pgTestConfig returns a config whose store is a fresh PostgreSQL schema
// named through env:KST_TEST_PG_DSN (set for the test), or skips.
func pgTestConfig(t *testing.T) (*config.Config, string) {
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
	t.Setenv("KST_TEST_PG_DSN", dsn)
	cfg := config.Default()
	cfg.Store.Postgres.DSN = "env:KST_TEST_PG_DSN"
	return cfg, dsn
}

// TestServeOnPostgres: init puts the vault in PostgreSQL (the master key
// stays in the data dir), serve runs on it, and readyz and status say so.
func TestServeOnPostgres(t *testing.T) {
	cfg, _ := pgTestConfig(t)
	cfg.Store.ReplicaID = "gw-a"
	dir := filepath.Join(shortTempDir(t), "d")
	res, err := Init(context.Background(), Env{}, InitOptions{DataDir: dir, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); err == nil {
		t.Fatal("init created a SQLite database with store.postgres set")
	}
	if !strings.Contains(res.DB, "127.0.0.1") || strings.Contains(res.DB, "search_path") {
		t.Fatalf("init database = %q", res.DB)
	}
	srv, c := runServer(t, Env{}, dir, cfg, ServerOptions{})
	code, h := readyz(t, srv.GatewayAddr())
	want := StoreHealth{Backend: BackendPostgres, Postgres: "reachable", FanOut: "polling", ReplicaID: "gw-a"}
	if code != http.StatusOK || h != want {
		t.Fatalf("readyz = %d %+v, want %+v", code, h, want)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Store; s == nil || s.Backend != BackendPostgres || !s.Reachable || s.SchemaVersion != postgres.Latest() || s.ReplicaID != "gw-a" || s.Error != "" {
		t.Fatalf("status store = %+v", st.Store)
	}
	if st.Audit == nil || st.Audit.Sink != AuditSinkPostgres {
		t.Fatalf("status audit = %+v", st.Audit)
	}
}

// TestServeOnPostgresRefusesOldSchema: without --migrate, serve refuses
// a database whose schema is behind; with it, serve migrates.
func TestServeOnPostgresRefusesOldSchema(t *testing.T) {
	cfg, _ := pgTestConfig(t)
	dir := filepath.Join(shortTempDir(t), "d")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := NewServer(context.Background(), Env{}, ServerOptions{DataDir: dir, Config: cfg, Logger: logging.New(io.Discard, logging.Options{})})
	if err == nil || !strings.Contains(err.Error(), "keystile migrate") {
		t.Fatalf("serve on an empty database: %v", err)
	}
}

// TestMigrateFromSQLite copies a real embedded install (a credential, a
// token, audit records) into PostgreSQL; the vault then opens there with
// the same master key, the credential reads back, the token verifies,
// and the copied audit log verifies.
func TestMigrateFromSQLite(t *testing.T) {
	ctx := context.Background()
	pgcfg, _ := pgTestConfig(t)
	dir := filepath.Join(shortTempDir(t), "d")
	if _, err := Init(ctx, Env{}, InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	sqcfg := config.Default()
	// The embedded install: a credential, a token, some audit records.
	db, v, err := OpenVault(ctx, Env{}, dir, sqcfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Set(ctx, "binance-main", map[string]secret.Value{"api_key": secret.FromString("AK-123"), "secret": secret.FromString("S3CR3T-canary")}, vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	ts, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	raw, tok, err := ts.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"binance"}})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := AuditKeys(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	al, err := db.openAudit(ctx, auditArgs{cfg: sqcfg, dataDir: dir, keys: keys, stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	const records = 25
	for i := range records {
		if err := al.Intent(ctx, audit.Event{Time: time.Now(), RequestID: "req" + string(rune('a'+i)), TokenID: string(tok.ID), Venue: "binance", Operation: "order.place", Decision: audit.Allow}); err != nil {
			t.Fatal(err)
		}
	}
	if err := al.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_ = v.Close(ctx)
	_ = db.Close()

	res, err := CopySQLiteToPostgres(ctx, Env{}, CopyOptions{From: dir, To: "env:KST_TEST_PG_DSN", Config: sqcfg})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, tc := range res.Tables {
		counts[tc.Table] = tc.Rows
	}
	if counts["tokens"] != 1 || counts["vault_credentials"] < 2 || counts["vault_fields"] < 2 || counts["vault_keks"] != 1 || counts["audit_records"] != records {
		t.Fatalf("copied %+v", res.Tables)
	}
	if res.Audit == nil || res.Audit.Records < records {
		t.Fatalf("audit verification of the copy = %+v", res.Audit)
	}
	if res.Version != postgres.Latest() || strings.Contains(res.Database, "search_path") {
		t.Fatalf("result = %+v", res)
	}

	// The same master key (the data dir's key file) opens the vault in
	// PostgreSQL; the credential and the token are there.
	pdb, pv, err := OpenVault(ctx, Env{}, dir, pgcfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	defer pv.Close(ctx)
	if pdb.Backend() != BackendPostgres {
		t.Fatalf("backend %s", pdb.Backend())
	}
	err = pv.WithCredential(ctx, "binance-main", func(c *vault.Credential) error {
		f, err := c.Field("secret")
		if err != nil {
			return err
		}
		if !f.Equal(secret.FromString("S3CR3T-canary")) {
			return errors.New("secret differs after the copy")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pts, err := token.New(ctx, token.Options{Store: pdb.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := pts.Verify(ctx, string(raw.Reveal()), token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("127.0.0.1")})
	if err != nil || got.ID != tok.ID {
		t.Fatalf("token on PostgreSQL: %v %v", got, err)
	}
	// The copied log goes on: the server appends to the same chain.
	pal, err := pdb.openAudit(ctx, auditArgs{cfg: pgcfg, dataDir: dir, keys: keys, stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := pal.Intent(ctx, audit.Event{Time: time.Now(), RequestID: "after", Venue: "binance", Operation: "order.place", Decision: audit.Allow}); err != nil {
		t.Fatal(err)
	}
	if err := pal.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := OpenAuditReader(ctx, pgcfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := audit.Verify(ctx, r, keys.PublicKey())
	if err != nil || rep.Records != res.Audit.Records+1 {
		t.Fatalf("audit after the copy: %+v %v", rep, err)
	}

	// A second copy into the now non-empty database is refused and
	// changes nothing.
	if _, err := CopySQLiteToPostgres(ctx, Env{}, CopyOptions{From: dir, To: "env:KST_TEST_PG_DSN", Config: sqcfg}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("second copy: %v", err)
	}
}
