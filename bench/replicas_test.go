package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRoundRobin checks that a target with several URLs sends its
// requests to them in turn, starting with the first.
func TestRoundRobin(t *testing.T) {
	seen := make(chan int, 100)
	var urls []string
	for i := range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Idempotency-Key") == "" {
				http.Error(w, "no key", http.StatusBadRequest)
				return
			}
			seen <- i
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL+"/api/v3/order")
	}
	env := &runEnv{runID: "rr", seq: new(atomic.Int64)}
	tg := &target{req: newRequest(env, workOrder, "http://127.0.0.1:1", nil), client: plainClient(2), seq: env.seq,
		urls: urls, rr: new(atomic.Uint64)}
	t.Cleanup(tg.client.CloseIdleConnections)
	for range 10 {
		if err := tg.do(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(seen)
	var got []int
	for i := range seen {
		got = append(got, i)
	}
	if len(got) != 10 {
		t.Fatalf("%d requests arrived, want 10", len(got))
	}
	for j, i := range got {
		if i != j%2 {
			t.Fatalf("requests went to servers %v, want alternating from the first", got)
		}
	}
}

// TestReplicasUnreachable checks that the replicas row is skipped, with
// a note naming the server, when Redis or PostgreSQL does not answer, and
// that a password in either URL never appears in the note.
func TestReplicasUnreachable(t *testing.T) {
	const canary = "canary-pw-3f9a"
	ctx := context.Background()
	env := &runEnv{tmp: t.TempDir(), seq: new(atomic.Int64), logf: t.Logf}
	f := ksVariants[sysKSReplicas]

	t.Setenv(redisEnvVar, "redis://user:"+canary+"@127.0.0.1:1/0")
	_, err := startReplicas(ctx, env, sysKSReplicas, workOrder, f)
	var sk *skipError
	if !errors.As(err, &sk) || !strings.Contains(sk.reason, "Redis unreachable at 127.0.0.1:1") || !strings.Contains(sk.reason, redisEnvVar) {
		t.Errorf("Redis down: %v, want a skip naming Redis and %s", err, redisEnvVar)
	}
	if err != nil && strings.Contains(err.Error(), canary) {
		t.Errorf("the Redis password leaked: %v", err)
	}

	_, _, _, err = benchSchema(ctx, "postgres://postgres:"+canary+"@127.0.0.1:1/test?sslmode=disable")
	if !errors.As(err, &sk) || !strings.Contains(sk.reason, "PostgreSQL unreachable at 127.0.0.1:1/test") || !strings.Contains(sk.reason, pgEnvVar) {
		t.Errorf("PostgreSQL down: %v, want a skip naming PostgreSQL and %s", err, pgEnvVar)
	}
	if err != nil && strings.Contains(err.Error(), canary) {
		t.Errorf("the PostgreSQL password leaked: %v", err)
	}
	if _, _, _, err = benchSchema(ctx, "host=127.0.0.1 password="+canary); !errors.As(err, &sk) || strings.Contains(err.Error(), canary) {
		t.Errorf("key=value DSN: %v, want a skip without the password", err)
	}
}

// TestBenchSchema creates and drops the row's schema on a real PostgreSQL
// (KEYSTILE_TEST_POSTGRES): the DSN it returns selects the schema, and
// nothing is left after drop.
func TestBenchSchema(t *testing.T) {
	base := os.Getenv("KEYSTILE_TEST_POSTGRES")
	if base == "" {
		t.Skip("KEYSTILE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	ctx := context.Background()
	dsn, name, drop, err := benchSchema(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^kst_bench_[0-9a-f]{12}$`).MatchString(name) {
		t.Errorf("schema name %q", name)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		drop()
		t.Fatal(err)
	}
	var cur string
	err = conn.QueryRow(ctx, "SELECT current_schema()").Scan(&cur)
	_ = conn.Close(ctx)
	drop()
	if err != nil || cur != name {
		t.Errorf("current_schema() = %q, %v; want %q", cur, err, name)
	}
	conn, err = pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Errorf("after drop: %d schemas named %s (%v)", n, name, err)
	}
}

// TestUpstreamLookup checks the upstream answers an order lookup by
// client order id with the order it placed (as Binance does), and "does
// not exist" for one it never saw or has forgotten (it keeps the last
// recentMax).
func TestUpstreamLookup(t *testing.T) {
	u := &upstream{}
	do := func(method, target, body string) (int, string) {
		w := httptest.NewRecorder()
		u.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
		return w.Code, w.Body.String()
	}
	code, placed := do(http.MethodPost, "/api/v3/order", orderBody+"&newClientOrderId=ks-1")
	if code != http.StatusOK || !strings.Contains(placed, `"clientOrderId":"ks-1"`) {
		t.Fatalf("place: %d %s", code, placed)
	}
	if code, got := do(http.MethodGet, "/api/v3/order?symbol=BTCUSDT&origClientOrderId=ks-1", ""); code != http.StatusOK || got != placed {
		t.Errorf("lookup ks-1: %d %s, want 200 %s", code, got, placed)
	}
	if code, got := do(http.MethodGet, "/api/v3/order?symbol=BTCUSDT&origClientOrderId=ks-2", ""); code != http.StatusBadRequest || !strings.Contains(got, "-2013") {
		t.Errorf("lookup ks-2: %d %s, want 400 -2013", code, got)
	}
	for i := range recentMax {
		u.recent.put("other-"+strconv.Itoa(i), "{}")
	}
	if _, ok := u.recent.get("ks-1"); ok {
		t.Error("ks-1 still remembered after recentMax newer orders")
	}
	if _, ok := u.recent.get("other-" + strconv.Itoa(recentMax-1)); !ok || len(u.recent.m) != recentMax {
		t.Errorf("remembers %d orders, want the last %d", len(u.recent.m), recentMax)
	}
	if u.orders.Load() != 1 || u.lookups.Load() != 2 {
		t.Errorf("counted %d orders, %d lookups; want 1, 2", u.orders.Load(), u.lookups.Load())
	}
}
