package console

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// waitFolded waits until the folding goroutine has taken every queued
// event.
func waitFolded(s *Stats) {
	for len(s.in) > 0 {
		runtime.Gosched()
	}
	s.mu.Lock()
	_ = len(s.keys) // a barrier: the fold in progress is done
	s.mu.Unlock()
}

func TestStats(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := NewStats(clk.Now)
	defer s.Close()
	ctx := context.Background()
	t0 := clk.Now()
	for i := range 10 {
		dec := audit.Allow
		if i%5 == 0 {
			dec = audit.Deny
		}
		s.Record(ctx, audit.Event{Time: t0, Venue: "binance", TokenID: "tok_a", Source: "10.0.0.1", Decision: dec, Latency: 2 * time.Millisecond, UpstreamLatency: 1800 * time.Microsecond})
	}
	s.Record(ctx, audit.Event{Time: t0.Add(time.Second), Venue: "kraken", TokenID: "tok_b", Source: "10.0.0.2", Decision: audit.Error, Latency: 50 * time.Millisecond})
	waitFolded(s)
	clk.Add(3 * time.Second)
	snap := s.Snapshot(10)
	if snap.Req != 11 || snap.Deny != 2 || snap.Errs != 1 || len(snap.Series) != 10 {
		t.Fatalf("%+v", snap)
	}
	if len(snap.Venues) != 2 || snap.Venues[0].Name != "binance" || snap.Venues[0].Req != 10 || snap.Venues[1].Errs != 1 {
		t.Fatalf("venues %+v", snap.Venues)
	}
	if len(snap.Bots) != 2 || snap.Bots[0].Name != "tok_a" {
		t.Fatalf("bots %+v", snap.Bots)
	}
	if snap.P50 < 2*time.Millisecond || snap.P50 > 3*time.Millisecond || snap.AddedP50 > 300*time.Microsecond || snap.P99 < 50*time.Millisecond {
		t.Fatalf("latency p50 %s p99 %s added %s", snap.P50, snap.P99, snap.AddedP50)
	}
	seen, ok := s.Seen("tok_a")
	if !ok || seen.Sources[0] != "10.0.0.1" || !seen.At.Equal(t0) {
		t.Fatalf("%+v %v", seen, ok)
	}
	// The window moves on.
	clk.Add(KeySeconds * time.Second)
	if snap := s.Snapshot(10); snap.Req != 0 || len(snap.Venues) != 0 {
		t.Fatalf("old events still counted: %+v", snap)
	}
}

// TestStatsBounded: keys, seen tokens and sources per token are bounded;
// Record never blocks, even with the folder stopped (drops are counted).
func TestStatsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := NewStats(clk.Now)
	ctx := context.Background()
	for i := range MaxKeys + 100 {
		tok := "tok_" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()
		for j := range SourcesPerToken + 2 {
			s.Record(ctx, audit.Event{Time: clk.Now(), Venue: "v", TokenID: tok, Source: "10.0.0." + string(rune('0'+j))})
		}
	}
	waitFolded(s)
	s.mu.Lock()
	keys, seen := len(s.keys), len(s.seen)
	for _, v := range s.seen {
		if len(v.Sources) > SourcesPerToken {
			t.Errorf("%d sources kept", len(v.Sources))
		}
	}
	s.mu.Unlock()
	if keys > MaxKeys+2 || seen > MaxSeenTokens {
		t.Fatalf("keys %d seen %d", keys, seen)
	}
	s.Close()
	done := make(chan struct{})
	go func() {
		for range statsQueue * 2 {
			s.Record(ctx, audit.Event{Venue: "v"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked with the folder stopped")
	}
	if s.Dropped() < statsQueue {
		t.Fatalf("dropped %d", s.Dropped())
	}
}

func TestLoginLimiter(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := newLoginLimiter(clk.Now)
	a := netip.MustParseAddr("192.0.2.7")
	for i := range loginFreeFailures {
		if d := l.wait(a); d != 0 {
			t.Fatalf("failure %d: wait %s", i, d)
		}
		l.fail(a)
	}
	if d := l.wait(a); d != loginLockout {
		t.Fatalf("lockout %s", d)
	}
	if d := l.wait(netip.MustParseAddr("192.0.2.8")); d != 0 {
		t.Fatal("another address waits")
	}
	clk.Add(loginLockout)
	if l.fail(a) != 2*loginLockout {
		t.Fatal("the lockout does not double")
	}
	for range 20 {
		l.fail(a)
	}
	if d := l.wait(a); d != loginMaxLockout {
		t.Fatalf("capped lockout %s", d)
	}
	l.ok(a)
	if l.wait(a) != 0 {
		t.Fatal("a good log-in does not clear")
	}
	// IPv6 by /64: another address of the same /64 shares the count.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff")
	for range loginFreeFailures + 1 {
		l.fail(v6a)
	}
	if l.wait(v6b) == 0 {
		t.Fatal("the /64 does not share the lockout")
	}
	// Bounded table.
	for i := range maxLoginSources + 10 {
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(l.m); n > maxLoginSources {
		t.Fatalf("%d sources kept", n)
	}
}

func TestSessions(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	ss := &sessions{ttl: time.Hour, idle: 10 * time.Minute, now: clk.Now, m: map[[32]byte]*session{}}
	s, val, err := ss.create("ops")
	if err != nil {
		t.Fatal(err)
	}
	if s.principal != "console:ops" || !strings.HasPrefix(s.handle, "cs_") || len(val) < 40 {
		t.Fatalf("%+v %q", s, val)
	}
	for _, bad := range []string{"", val + "x", strings.Repeat("a", 500)} {
		if _, ok := ss.get(bad, true); ok {
			t.Fatalf("%q accepted", bad)
		}
	}
	clk.Add(9 * time.Minute)
	if _, ok := ss.get(val, false); !ok {
		t.Fatal("live session refused")
	}
	clk.Add(2 * time.Minute) // 11 min since the last counted activity
	if _, ok := ss.get(val, true); ok {
		t.Fatal("a live-update-only session outlived its idle timeout")
	}
	s, val, _ = ss.create("ops")
	for range 6 {
		clk.Add(9 * time.Minute)
		if _, ok := ss.get(val, true); !ok {
			t.Fatal("an active session ended early")
		}
	}
	clk.Add(9 * time.Minute) // 63 min since creation
	if _, ok := ss.get(val, true); ok {
		t.Fatal("a session outlived its lifetime")
	}
	if !s.checkCSRF(s.csrf) || s.checkCSRF("") || s.checkCSRF(s.csrf+"x") {
		t.Fatal("CSRF check")
	}
	for range MaxSessions + 5 {
		if _, _, err := ss.create("ops"); err != nil {
			t.Fatal(err)
		}
	}
	if ss.count() > MaxSessions {
		t.Fatalf("%d sessions", ss.count())
	}
}

func TestChart(t *testing.T) {
	c := lineChart("rate", time.Unix(0, 0), time.Unix(60, 0), formatRate, []string{"a", "b"}, []string{"A", "B"}, []float64{0, 3, 7}, []float64{0, 0, 1})
	if c.YMax != "10/s" || c.Empty || len(c.Series) != 2 || c.Series[0].Points != "0.0,122.0 300.0,87.8 600.0,42.2" || c.Series[0].Last != "7/s" {
		t.Fatalf("%+v", c)
	}
	if e := lineChart("x", time.Time{}, time.Time{}, formatRate, []string{"a"}, []string{"A"}, []float64{0, 0}); !e.Empty || e.YMax != "1/s" {
		t.Fatalf("%+v", e)
	}
	for _, tc := range []struct {
		used, limit float64
		w           int
		class       string
	}{{0, 100, 0, "ok"}, {50, 100, 50, "ok"}, {85, 100, 85, "warn"}, {100, 100, 100, "full"}, {250, 100, 100, "full"}, {1, 0, 100, "full"}} {
		if b := bar(tc.used, tc.limit); b.Width != tc.w || b.Class != tc.class {
			t.Errorf("bar(%v, %v) = %+v", tc.used, tc.limit, b)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0"}, {180 * time.Microsecond, "180µs"}, {2400 * time.Microsecond, "2.4ms"}, {1234 * time.Millisecond, "1.23s"}} {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("%s: %s", tc.d, got)
		}
	}
}

// TestListenRefusesPlainOffLoopback: without TLS the console binds
// loopback only.
func TestListenRefusesPlainOffLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		c := &Console{o: Options{Addr: addr}}
		if err := c.Listen(); err != ErrNotLoopback {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestTemplatesParse(t *testing.T) {
	pages, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"login", "overview", "tokens", "credentials", "policies", "budgets", "audit", "record", "alerts", "killswitch"} {
		if pages[p] == nil {
			t.Errorf("no page %s", p)
		}
	}
}
