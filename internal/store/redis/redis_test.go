package redisstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/secret"
	redisstore "github.com/keystile/keystile/internal/store/redis"
	"github.com/keystile/keystile/internal/venue"
)

// testOptions reads KEYSTILE_TEST_REDIS and gives a key prefix of the
// test's own, whose keys are deleted when the test ends.
func testOptions(t testing.TB) redisstore.Options {
	t.Helper()
	u := os.Getenv("KEYSTILE_TEST_REDIS")
	if u == "" {
		t.Skip("KEYSTILE_TEST_REDIS is not set: skipping the Redis tests (e.g. KEYSTILE_TEST_REDIS=redis://127.0.0.1:6379/0)")
	}
	o, err := redisstore.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	o.KeyPrefix = "keystile-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() { cleanup(t, u, o.KeyPrefix) })
	return o
}

// cleanup deletes every key that holds prefix.
func cleanup(t testing.TB, u, prefix string) {
	ro, err := redis.ParseURL(u)
	if err != nil {
		t.Error(err)
		return
	}
	rdb := redis.NewClient(ro)
	defer rdb.Close()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, "*"+prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// open opens a client (one replica) with o.
func open(t testing.TB, o redisstore.Options) *redisstore.Client {
	t.Helper()
	c, err := redisstore.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// hangUp is a server that accepts connections and closes them at once: a
// Redis that is broken, counting the connections tried.
func hangUp(t testing.TB) (addr string, accepts *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepts = new(atomic.Int64)
	go func() {
		for {
			cn, err := l.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			_ = cn.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String(), accepts
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// broken is a client of a Redis that is down: New (not Open) to a closed
// port.
func broken(t testing.TB, o redisstore.Options) *redisstore.Client {
	t.Helper()
	o.Addr = closedAddr(t)
	c, err := redisstore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const canary = "canary-Pa55w0rd-7f3e9c"

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		addr     string
		db       int
		tls      bool
		user     string
		pass     string
		wantErr  bool
	}{
		{name: "plain", in: "redis://127.0.0.1:6379/0", addr: "127.0.0.1:6379"},
		{name: "defaults", in: "redis://", addr: "localhost:6379"},
		{name: "db and auth", in: "redis://gw:" + canary + "@cache.internal:6380/3", addr: "cache.internal:6380", db: 3, user: "gw", pass: canary},
		{name: "password only", in: "redis://:" + canary + "@h", addr: "h:6379", pass: canary},
		{name: "tls", in: "rediss://h:6390", addr: "h:6390", tls: true},
		{name: "bad scheme", in: "http://:" + canary + "@h", wantErr: true},
		{name: "bad escape in password", in: "redis://u:" + canary + "%zz@h", wantErr: true},
		{name: "bad port", in: "redis://u:" + canary + "@h:port", wantErr: true},
		{name: "bad db", in: "redis://u:" + canary + "@h/x" + canary, wantErr: true},
		{name: "query", in: "redis://u:" + canary + "@h/0?password=" + canary, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := redisstore.ParseURL(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: %+v", o)
				}
				if strings.Contains(err.Error(), canary) {
					t.Fatalf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Addr != tc.addr || o.DB != tc.db || (o.TLS != nil) != tc.tls || o.Username != tc.user || string(o.Password.Reveal()) != tc.pass {
				t.Fatalf("got %+v", o)
			}
			if s := fmt.Sprintf("%v %+v %#v", o, o, o); strings.Contains(s, canary) {
				t.Fatalf("options print the password: %s", s)
			}
		})
	}
}

// capturedLogs sends go-redis's internal log to a buffer for the test.
type capturedLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *capturedLogs) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, format+"\n", v...)
}

func (l *capturedLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestPasswordNeverShown sends a canary password to the real server (which
// refuses it: it has no such user or password) and to a closed port, and
// checks no error, status or driver log line shows it.
func TestPasswordNeverShown(t *testing.T) {
	logs := &capturedLogs{}
	redis.SetLogger(logs)
	ctx := context.Background()
	base := testOptions(t)
	var texts []string
	for _, user := range []string{"", "keystile-canary-user"} {
		o := base
		o.Username, o.Password = user, secret.FromString(canary)
		c, err := redisstore.Open(ctx, o)
		switch {
		case err == nil && user != "":
			t.Fatalf("user %q: a wrong password was accepted", user)
		case err == nil:
			// A server without requirepass lets the default user in
			// whatever the password.
			_ = c.Close()
		default:
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
		}
		c, err = redisstore.New(o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Rates().Take(ctx, []policy.RateKey{{Key: "k", Rate: 1, Period: time.Second, Burst: 1}})
		texts = append(texts, fmt.Sprint(err), c.Status(ctx, redisstore.StatusOptions{}).String())
		_ = c.Close()
	}
	o := base
	o.Addr, o.Password = closedAddr(t), secret.FromString(canary)
	_, err := redisstore.Open(ctx, o)
	if err == nil {
		t.Fatal("opened a closed port")
	}
	texts = append(texts, err.Error(), fmt.Sprintf("%v %+v %#v", o, o, o))
	texts = append(texts, logs.String())
	for _, s := range texts {
		if strings.Contains(s, canary) {
			t.Fatalf("the password shows in %q", s)
		}
	}
	t.Logf("errors: %q", texts[:len(texts)-1])
}

func TestOpenOptions(t *testing.T) {
	if _, err := redisstore.New(redisstore.Options{}); err == nil {
		t.Error("no address accepted")
	}
	if _, err := redisstore.New(redisstore.Options{Addr: "h:1", DB: -1}); err == nil {
		t.Error("negative database accepted")
	}
	if _, err := redisstore.New(redisstore.Options{Addr: "h:1", CAFile: "/nonexistent/ca.pem"}); err == nil {
		t.Error("missing CA file accepted")
	}
	bad := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := redisstore.New(redisstore.Options{Addr: "h:1", CAFile: bad}); err == nil {
		t.Error("CA file without certificates accepted")
	}
	// A closed port fails Open quickly (DialTimeout bounds a silent one).
	start := time.Now()
	if _, err := redisstore.Open(context.Background(), redisstore.Options{Addr: closedAddr(t)}); err == nil {
		t.Error("opened a closed port")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open of a closed port took %v", d)
	}
}

// ---- shared rate limits ----------------------------------------------------

const ratePolicies = `venues:
  binance:
    type: binance
    credential: bn-main
    base_url: "https://api.binance.com"
policies:
  p:
    rate:
      - scope: token
        limit: "2/m"
      - scope: account
        limit: "3/m"
  one:
    rate:
      - scope: token
        limit: "10/m"
`

func ratesSet(t testing.TB) *policy.Set {
	t.Helper()
	cfg, err := config.Parse("keystile.yaml", []byte(ratePolicies))
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// engine is one replica's policy engine using c's shared rates.
func engine(t testing.TB, c *redisstore.Client, fb policy.RatesFallback) *policy.Engine {
	e := policy.New(policy.Options{Rates: c.Rates(), RatesFallback: fb})
	e.Load(ratesSet(t))
	return e
}

func req(e *policy.Engine, pol, tok, acct string, dry bool) *policy.Decision {
	return e.Evaluate(context.Background(), &policy.Input{
		TokenID: tok, Policy: pol, Venue: "binance", Account: acct,
		Operation: venue.OpMarketRead, Method: "GET", Path: "/api/v3/ticker/price", DryRun: dry,
	})
}

// TestRatesSharedAcrossReplicas: three replicas, 60 concurrent requests of
// one token against 10/m: exactly 10 pass in total (the limit is one
// bucket in Redis, not 10 per replica).
func TestRatesSharedAcrossReplicas(t *testing.T) {
	o := testOptions(t)
	var engines []*policy.Engine
	for range 3 {
		engines = append(engines, engine(t, open(t, o), policy.RatesFallback{}))
	}
	var allowed, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			d := req(engines[i%3], "one", "tok_shared", "acct", false)
			switch {
			case d.Allow:
				allowed.Add(1)
			case d.Status == http.StatusTooManyRequests && d.Rule == "policy.one.rate" && d.RetryAfter > 0:
				limited.Add(1)
			default:
				t.Errorf("unexpected decision: %+v", d)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 10 || limited.Load() != 50 {
		t.Fatalf("allowed %d limited %d, want 10 and 50", allowed.Load(), limited.Load())
	}
	// The denial's wait is about one emission interval (6 s at 10/m).
	d := req(engines[0], "one", "tok_shared", "acct", false)
	if d.Allow || d.RetryAfter < 4*time.Second || d.RetryAfter > 6*time.Second {
		t.Fatalf("wait after the burst: %+v", d)
	}
}

// TestRatesAllOrNone is policy's TestRate against Redis, with each request
// on another replica: a denial takes nothing from the other buckets, dry
// runs take nothing.
func TestRatesAllOrNone(t *testing.T) {
	o := testOptions(t)
	r := []*policy.Engine{engine(t, open(t, o), policy.RatesFallback{}), engine(t, open(t, o), policy.RatesFallback{})}
	n := 0
	call := func(tok, acct string, dry bool) *policy.Decision {
		n++
		return req(r[n%2], "p", tok, acct, dry)
	}
	for range 10 {
		if d := call("tok_a", "acct1", true); !d.Allow {
			t.Fatalf("dry run denied: %+v", d)
		}
	}
	for i := range 2 {
		if d := call("tok_a", "acct1", false); !d.Allow {
			t.Fatalf("request %d denied: %+v", i, d)
		}
	}
	if d := call("tok_a", "acct1", false); d.Allow || d.Rule != "policy.p.rate" || d.Status != http.StatusTooManyRequests || d.RetryAfter <= 0 {
		t.Fatalf("third request: %+v", d)
	}
	if d := call("tok_a", "acct1", true); d.Allow || d.RetryAfter <= 0 {
		t.Fatalf("dry run of an exhausted bucket: %+v", d)
	}
	if d := call("tok_b", "acct1", false); !d.Allow {
		t.Fatalf("tok_b (account bucket has one left): %+v", d)
	}
	if d := call("tok_c", "acct1", false); d.Allow || d.Rule != "policy.p.rate" {
		t.Fatalf("account bucket should be empty: %+v", d)
	}
	// tok_c's token bucket was left untouched by that denial: 2 more on
	// another account.
	for i := range 2 {
		if d := call("tok_c", "acct2", false); !d.Allow {
			t.Fatalf("tok_c on acct2, request %d (token bucket should be full): %+v", i, d)
		}
	}
	if d := call("tok_c", "acct2", false); d.Allow {
		t.Fatalf("tok_c third: %+v", d)
	}
}

// TestRatesSingleAndMulti: a bucket taken by redis_rate (one key) is seen
// by the multi-key script (peek) and the other way round.
func TestRatesSingleAndMulti(t *testing.T) {
	ctx := context.Background()
	r := open(t, testOptions(t)).Rates()
	a := policy.RateKey{Key: "a", Rate: 2, Period: time.Minute, Burst: 2}
	b := policy.RateKey{Key: "b", Rate: 1, Period: time.Minute, Burst: 1}
	for i := range 2 {
		if w, err := r.Take(ctx, []policy.RateKey{a}); err != nil || w != 0 {
			t.Fatalf("take a %d: %v %v", i, w, err)
		}
	}
	if w, err := r.Peek(ctx, []policy.RateKey{a, b}); err != nil || w < 25*time.Second || w > 30*time.Second {
		t.Fatalf("peek after a emptied: %v %v, want about 30s", w, err)
	}
	if w, err := r.Peek(ctx, []policy.RateKey{b}); err != nil || w != 0 {
		t.Fatalf("peek b: %v %v", w, err)
	}
	if w, err := r.Take(ctx, []policy.RateKey{a, b}); err != nil || w == 0 {
		t.Fatalf("take a+b: %v %v", w, err)
	}
	if w, err := r.Take(ctx, []policy.RateKey{b}); err != nil || w != 0 {
		t.Fatalf("b after the refused take: %v %v (all or none)", w, err)
	}
	if w, err := r.Take(ctx, []policy.RateKey{b}); err != nil || w < 55*time.Second {
		t.Fatalf("b second: %v %v", w, err)
	}
	if _, err := r.Take(ctx, []policy.RateKey{{Key: "z", Rate: 0, Period: time.Second, Burst: 1}}); err == nil {
		t.Fatal("zero rate accepted")
	}
}

func TestRatesOutageFailClosed(t *testing.T) {
	o := testOptions(t)
	c := broken(t, o)
	e := engine(t, c, policy.RatesFallback{Mode: policy.FallbackFailClosed})
	for _, dry := range []bool{false, true} {
		d := req(e, "one", "tok_a", "acct", dry)
		if d.Allow || d.Rule != policy.RuleRateUnavailable || d.Status != http.StatusServiceUnavailable {
			t.Fatalf("dry %v: %+v", dry, d)
		}
	}
	st := c.Status(context.Background(), redisstore.StatusOptions{RatesShared: true, Poll: time.Second})
	want := "redis: down since " + st.DownSince.UTC().Format(time.RFC3339) + ", rate limits: fail_closed, revocation: polling PostgreSQL every 1s"
	if st.Up || st.DownSince.IsZero() || st.String() != want {
		t.Fatalf("status %q, want %q", st, want)
	}
	t.Logf("status: %s", st)
}

func TestRatesOutageLocalShare(t *testing.T) {
	o := testOptions(t)
	fb := policy.RatesFallback{Mode: policy.FallbackLocalShare, Replicas: 2}
	// Two replicas cut off from Redis: 10/m becomes 5/m on each, 10 in
	// total, as with Redis.
	allowed := 0
	for range 2 {
		e := engine(t, broken(t, o), fb)
		for range 8 {
			if d := req(e, "one", "tok_a", "acct", false); d.Allow {
				allowed++
			} else if d.Rule != "policy.one.rate" || d.Status != http.StatusTooManyRequests {
				t.Fatalf("refusal: %+v", d)
			}
		}
	}
	if allowed != 10 {
		t.Fatalf("allowed %d in total, want 10 (5 per replica)", allowed)
	}
	// Redis comes back (here: a replica whose client works): the shared
	// bucket applies again, untouched by the outage.
	e := engine(t, open(t, o), fb)
	for i := range 10 {
		if d := req(e, "one", "tok_a", "acct", false); !d.Allow {
			t.Fatalf("request %d with Redis back: %+v", i, d)
		}
	}
	if d := req(e, "one", "tok_a", "acct", false); d.Allow {
		t.Fatal("eleventh with Redis back allowed")
	}
	c := broken(t, o)
	st := c.Status(context.Background(), redisstore.StatusOptions{RatesShared: true, Rates: fb, Poll: time.Second})
	if !strings.Contains(st.String(), "rate limits: local_share (1/2 of each limit per replica)") {
		t.Fatalf("status %q", st)
	}
}

// TestRatesDownFailsFast: while Redis is down, commands are not sent but
// for one probe every 500 ms, so a burst of requests costs no connections.
func TestRatesDownFailsFast(t *testing.T) {
	o := testOptions(t)
	addr, accepts := hangUp(t)
	o.Addr = addr
	c, err := redisstore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.Rates()
	keys := []policy.RateKey{{Key: "k", Rate: 1, Period: time.Second, Burst: 1}}
	start := time.Now()
	short := 0
	for range 200 {
		_, err := r.Take(context.Background(), keys)
		if err == nil {
			t.Fatal("a take succeeded against a broken server")
		}
		if errors.Is(err, redisstore.ErrDown) {
			short++
		}
	}
	el := time.Since(start)
	// 200 takes in el: at most one probe per 500 ms after the first
	// failure (each probe may dial twice: a retry).
	maxAccepts := int64(2 * (2 + el/(500*time.Millisecond)))
	if n := accepts.Load(); n == 0 || n > maxAccepts || short < 150 {
		t.Fatalf("%d connections and %d short-circuited takes for 200 takes in %v", n, short, el)
	}
	t.Logf("200 takes against a broken server: %v, %d connections", el, accepts.Load())
}

func TestStatusUp(t *testing.T) {
	c := open(t, testOptions(t))
	st := c.Status(context.Background(), redisstore.StatusOptions{RatesShared: true, Poll: time.Second})
	if want := "redis: ok, rate limits: shared in Redis, revocation: Redis pub/sub and polling PostgreSQL every 1s"; !st.Up || st.String() != want {
		t.Fatalf("status %q, want %q", st, want)
	}
	if err := c.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(context.Background(), redisstore.StatusOptions{}); st.String() != "redis: ok, rate limits: per replica, revocation: Redis pub/sub" {
		t.Fatalf("status %q", st)
	}
	// Down, then up again: DownSince is cleared by the first answer.
	d := broken(t, testOptions(t))
	if err := d.Ready(context.Background()); err == nil || d.DownSince().IsZero() {
		t.Fatalf("broken client ready: %v, down since %v", err, d.DownSince())
	}
	if st := d.Status(context.Background(), redisstore.StatusOptions{}); st.Revocation != "revocation: not propagated until Redis is back" {
		t.Fatalf("status %q", st)
	}
}

// TestDriverLogger: go-redis's own lines reach the slog logger.
func TestDriverLogger(t *testing.T) {
	var buf syncBuffer
	redisstore.SetDriverLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { redisstore.SetDriverLogger(slog.New(slog.DiscardHandler)) })
	c := broken(t, redisstore.Options{Password: secret.FromString(canary)})
	_ = c.Ready(context.Background())
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "redis driver: ") || !strings.Contains(out, "connection refused") {
		t.Fatalf("driver log: %q", out)
	}
	if strings.Contains(out, canary) {
		t.Fatalf("the password shows in the driver log: %q", out)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
