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

	goredis "github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/postgres"
	redisstore "github.com/keystile/keystile/internal/store/redis"
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
// a database whose schema is behind; with it, serve migrates first.
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
	// serve --migrate brings the schema up to date (then finds no vault:
	// init was not run).
	_, err = NewServer(context.Background(), Env{}, ServerOptions{DataDir: dir, Config: cfg, Migrate: true, Logger: logging.New(io.Discard, logging.Options{})})
	if !errors.Is(err, vault.ErrNotInitialized) {
		t.Fatalf("serve --migrate on an empty database: %v", err)
	}
	res, err := MigratePostgres(context.Background(), Env{}, cfg)
	if err != nil || len(res.Applied) != 0 || res.Version != postgres.Latest() {
		t.Fatalf("after serve --migrate: %+v %v", res, err)
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
	// A budget reservation, a loss-guard amount (SQLite keeps both in
	// budget_entries) and an answered idempotency key (its answer in
	// SQLite's idempotency_answers).
	now := time.Now()
	budgetKey := "token:" + string(tok.ID) + "/daily/USDT/day:" + now.UTC().Format("2006-01-02")
	claim := policy.Claim{Key: budgetKey, Since: now.Add(-time.Hour), Limit: decimal.RequireFromString("1000")}
	if _, err := db.Budgets().Reserve(ctx, now, decimal.RequireFromString("60"), []policy.Claim{claim}); err != nil {
		t.Fatal(err)
	}
	const lossKey = "lossguard/g/account:main/buy"
	if err := db.LossLedger().Add(ctx, lossKey, now, decimal.RequireFromString("12.5")); err != nil {
		t.Fatal(err)
	}
	pending := idem.Record{Scope: string(tok.ID), Key: "k1", Fingerprint: []byte{1, 2, 3}, ClientOrderID: "coid-1", State: idem.StatePending,
		Owner: "o1", Created: now, Updated: now}
	if _, ok, err := db.Idempotency().Claim(ctx, pending, now.Add(-time.Hour)); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	answered := pending
	answered.State, answered.Updated = idem.StateDone, now.Add(time.Millisecond)
	answered.Replay = idem.Replay{Status: 200, Body: []byte(`{"orderId":9}`), ClientOrderID: "coid-1", VenueOrderID: "v-9"}
	if err := db.Idempotency().Swap(ctx, answered, "o1"); err != nil {
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
	if counts["budget_entries"] != 1 || counts["lossguard_entries"] != 1 || counts["idempotency"] != 1 {
		t.Fatalf("order-path tables copied %+v", res.Tables)
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
	// The budget, the loss guard and the answered key read back.
	if err := pdb.Budgets().Check(ctx, now, decimal.RequireFromString("941"), []policy.Claim{claim}); err == nil {
		t.Fatal("the copied reservation does not count against the budget")
	}
	if err := pdb.Budgets().Check(ctx, now, decimal.RequireFromString("940"), []policy.Claim{claim}); err != nil {
		t.Fatalf("budget after the copy: %v", err)
	}
	if sum, err := pdb.LossLedger().Sum(ctx, lossKey, now.Add(-time.Hour)); err != nil || !sum.Equal(decimal.RequireFromString("12.5")) {
		t.Fatalf("loss guard after the copy: %s %v", sum, err)
	}
	rec, err := pdb.Idempotency().Get(ctx, string(tok.ID), "k1")
	if err != nil || rec.State != idem.StateDone || rec.Replay.Status != 200 || string(rec.Replay.Body) != `{"orderId":9}` || rec.Replay.VenueOrderID != "v-9" {
		t.Fatalf("idempotency key after the copy: %+v %v", rec, err)
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

// redisTestAddr is KEYSTILE_TEST_REDIS's host:port, or a skip.
func redisTestAddr(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KEYSTILE_TEST_REDIS")
	if u == "" {
		t.Skip("KEYSTILE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0)")
	}
	ro, err := redisstore.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return ro.Addr
}

// replicaDirs makes n data dirs sharing one master key (the first is
// initialised on cfg's store; the others get its key file), as an
// operator sets up replicas.
func replicaDirs(t *testing.T, cfg *config.Config, n int) []string {
	t.Helper()
	base := shortTempDir(t)
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(base, string(rune('a'+i)))
	}
	if _, err := Init(context.Background(), Env{}, InitOptions{DataDir: dirs[0], Config: cfg}); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[1:] {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{KeyFile, LocalCAFile} {
			b, err := os.ReadFile(filepath.Join(dirs[0], f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dirs
}

// TestReplicasShareRevocationAndKillSwitch: two servers on one database;
// a token revoked, a credential rotated or a kill switch engaged on one is
// applied by the other, through Redis at once, and by polling without it.
func TestReplicasShareRevocationAndKillSwitch(t *testing.T) {
	for _, withRedis := range []bool{true, false} {
		t.Run(map[bool]string{true: "redis", false: "polling"}[withRedis], func(t *testing.T) {
			cfg, _ := pgTestConfig(t)
			cfg.Store.PollInterval = 200 * time.Millisecond
			if withRedis {
				cfg.Store.Redis.Addr = redisTestAddr(t)
				cfg.Store.PollInterval = time.Minute // only Redis can be this fast
			}
			dirs := replicaDirs(t, cfg, 2)
			ca, cb := *cfg, *cfg
			ca.Store.ReplicaID, cb.Store.ReplicaID = "a", "b"
			a, _ := runServer(t, Env{}, dirs[0], &ca, ServerOptions{})
			b, _ := runServer(t, Env{}, dirs[1], &cb, ServerOptions{})
			if withRedis {
				cleanRedis(t, a)
				if code, h := readyz(t, b.GatewayAddr()); code != http.StatusOK || h.Redis != "ok" || h.FanOut != "redis" || h.RateLimitFallback != "fail_closed" {
					t.Fatalf("readyz = %d %+v", code, h)
				}
			}
			ctx := context.Background()
			req := token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("127.0.0.1")}
			raw, tok, err := a.tokens.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"binance"}})
			if err != nil {
				t.Fatal(err)
			}
			// Created on A: known on B.
			waitFor(t, "B to learn the token", func() bool { _, err := b.tokens.Verify(ctx, string(raw.Reveal()), req); return err == nil })
			start := time.Now()
			if err := a.tokens.Revoke(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "B to refuse the revoked token", func() bool {
				_, err := b.tokens.Verify(ctx, string(raw.Reveal()), req)
				return errors.Is(err, token.ErrRevoked)
			})
			t.Logf("revocation on A refused on B after %s", time.Since(start))

			// A credential changed on A is read anew on B (which had it
			// cached).
			set := func(val string) {
				if _, err := a.vault.Set(ctx, "shared-cred", map[string]secret.Value{"k": secret.FromString(val)}, vault.SetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			readB := func() string {
				var got string
				_ = b.vault.WithCredential(ctx, "shared-cred", func(c *vault.Credential) error {
					f, err := c.Field("k")
					if err == nil {
						got = string(f.Reveal())
					}
					return err
				})
				return got
			}
			set("v1")
			waitFor(t, "B to read the credential", func() bool { return readB() == "v1" })
			set("v2")
			waitFor(t, "B to read the credential's new version", func() bool { return readB() == "v2" })

			if _, err := a.kill.Engage(ctx, killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "binance", Rule: killswitch.RulePanic, Actor: "test", Reason: "test"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "B to apply the kill switch", func() bool { return b.kill.Covers("tok_x", "binance") })
		})
	}
}

// waitFor polls cond for up to 5 s (a bound on correctness, not a
// performance figure).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// cleanRedis removes the installation's keys from the test server when
// the test ends.
func cleanRedis(t *testing.T, s *Server) {
	t.Helper()
	prefix, err := RedisKeyPrefix(s.vault)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o, err := goredis.ParseURL(os.Getenv("KEYSTILE_TEST_REDIS"))
		if err != nil {
			return
		}
		c := goredis.NewClient(o)
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
}

// TestInitSecondReplicaRefused: init on a database that already holds a
// vault refuses, saying what to do, and leaves no key file behind.
func TestInitSecondReplicaRefused(t *testing.T) {
	cfg, _ := pgTestConfig(t)
	base := shortTempDir(t)
	if _, err := Init(context.Background(), Env{}, InitOptions{DataDir: filepath.Join(base, "a"), Config: cfg}); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(base, "b")
	_, err := Init(context.Background(), Env{}, InitOptions{DataDir: b, Config: cfg})
	if !errors.Is(err, ErrAlreadyInitialized) || !strings.Contains(err.Error(), "copy the first one's") {
		t.Fatalf("second init: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b, KeyFile)); err == nil {
		t.Fatal("the refused init left a key file")
	}
}

// TestServeWithRedisDown: a Redis that does not answer does not stop
// serve or make it unready; readyz and status say it is down and that
// revocations go by polling, rate limits by their fallback.
func TestServeWithRedisDown(t *testing.T) {
	cfg, _ := pgTestConfig(t)
	cfg.Store.Redis.Addr = "127.0.0.1:1" // nothing listens there
	cfg.Store.Redis.RateLimitFallback, cfg.Store.Redis.Replicas = config.RateLimitLocalShare, 3
	dir := replicaDirs(t, cfg, 1)[0]
	srv, c := runServer(t, Env{}, dir, cfg, ServerOptions{})
	code, h := readyz(t, srv.GatewayAddr())
	if code != http.StatusOK || h.Redis != "down" || h.FanOut != "polling" || h.RateLimitFallback != config.RateLimitLocalShare || h.Postgres != "reachable" {
		t.Fatalf("readyz with Redis down = %d %+v", code, h)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Store.Redis; r == nil || r.State != "down" || r.Addr != "127.0.0.1:1" || r.Error == "" {
		t.Fatalf("status redis = %+v", st.Store.Redis)
	}
}
