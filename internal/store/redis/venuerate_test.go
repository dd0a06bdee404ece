package redisstore_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	redisstore "github.com/keystile/keystile/internal/store/redis"
	"github.com/keystile/keystile/internal/testnet"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
)

// roomy is a venue model that allows 1000 requests a minute per class and
// backs off 1 s on a 429 of its own.
func roomy() *venue.WindowLimiter {
	return &venue.WindowLimiter{Window: time.Minute, Limit: func(string) int { return 1000 }, Backoff: time.Second, MaxBackoff: time.Minute}
}

func tooMany(retryAfter string) *http.Response {
	h := http.Header{}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return &http.Response{StatusCode: http.StatusTooManyRequests, Header: h}
}

// TestVenueBackoffSharedAcrossReplicas: a 429 with Retry-After: 2 seen by
// replica A makes replica B refuse within 250 ms (its refresh interval is
// 150 ms), and a replica that was idle refuses at once; all refuse until
// the deadline and allow again after it.
func TestVenueBackoffSharedAcrossReplicas(t *testing.T) {
	o := testOptions(t)
	const key = "okx/main"
	replica := func() *venue.SharedLimiter {
		return venue.Share(roomy(), venue.SharedOptions{Store: open(t, o).Backoffs(), Key: key})
	}
	a, b, idle := replica(), replica(), replica()
	other := venue.Share(roomy(), venue.SharedOptions{Store: open(t, o).Backoffs(), Key: "okx/other"})
	for _, l := range []*venue.SharedLimiter{a, b, other} {
		if _, ok := l.Allow("trade", time.Now()); !ok {
			t.Fatal("refused before any back-off")
		}
	}

	seen := time.Now()
	a.Observe(tooMany("2"), seen)
	deadline := seen.Add(2 * time.Second)
	if wait, ok := a.Allow("trade", time.Now()); ok || wait > 2*time.Second {
		t.Fatalf("A after its own 429: %v %v", wait, ok)
	}
	var refusedAt time.Time
	for range 100 {
		now := time.Now()
		if wait, ok := b.Allow("trade", now); !ok {
			if wait <= 0 || now.Add(wait).Before(deadline.Add(-100*time.Millisecond)) || now.Add(wait).After(deadline.Add(100*time.Millisecond)) {
				t.Fatalf("B's Retry-After %v ends at %v, want about %v", wait, now.Add(wait), deadline)
			}
			refusedAt = now
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refusedAt.IsZero() {
		t.Fatal("B never refused")
	}
	d := refusedAt.Sub(seen)
	if d > 250*time.Millisecond {
		t.Errorf("B refused %v after A's 429, want <= 250 ms", d)
	}
	t.Logf("B refused %v after A's 429", d)
	if _, ok := idle.Allow("trade", time.Now()); ok {
		t.Error("an idle replica allowed its first request during the back-off")
	}
	if _, ok := other.Allow("trade", time.Now()); !ok {
		t.Error("another API key was backed off")
	}

	// Refused until the deadline, allowed after it.
	time.Sleep(time.Until(deadline.Add(-300 * time.Millisecond)))
	if _, ok := b.Allow("trade", time.Now()); ok {
		t.Error("B allowed before the deadline")
	}
	time.Sleep(time.Until(deadline.Add(50 * time.Millisecond)))
	for _, l := range []*venue.SharedLimiter{a, b, idle} {
		if wait, ok := l.Allow("trade", time.Now()); !ok {
			t.Errorf("refused after the deadline: %v", wait)
		}
	}
}

// TestVenueBackoffTeapot: a 418 (Binance's IP ban) without Retry-After
// backs every replica off for the Ban default.
func TestVenueBackoffTeapot(t *testing.T) {
	o := testOptions(t)
	a := venue.Share(roomy(), venue.SharedOptions{Store: open(t, o).Backoffs(), Key: "binance/main", Ban: 5 * time.Second})
	b := venue.Share(roomy(), venue.SharedOptions{Store: open(t, o).Backoffs(), Key: "binance/main"})
	now := time.Now()
	a.Observe(&http.Response{StatusCode: http.StatusTeapot, Header: http.Header{}}, now)
	var wait time.Duration
	ok := true
	for range 50 {
		if wait, ok = b.Allow("x", time.Now()); !ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The deadline is the key's expiry on the Redis server, read back as
	// a remaining time: allow a few milliseconds of rounding above 5 s.
	if ok || wait < 4*time.Second || wait > 5*time.Second+250*time.Millisecond {
		t.Fatalf("B after A's 418: %v %v, want about 5 s", wait, ok)
	}
}

// TestBackoffsKeepLater: a deadline sooner than the one recorded does not
// shorten it; a later one extends it; a passed one is ignored.
func TestBackoffsKeepLater(t *testing.T) {
	bo := open(t, testOptions(t)).Backoffs()
	ctx := context.Background()
	if u, err := bo.Until(ctx, "k"); err != nil || !u.IsZero() {
		t.Fatalf("before any: %v %v", u, err)
	}
	now := time.Now()
	for _, d := range []time.Duration{5 * time.Second, time.Second, -time.Second} {
		if err := bo.Publish(ctx, "k", now.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	u, err := bo.Until(ctx, "k")
	if err != nil || u.Before(now.Add(4500*time.Millisecond)) || u.After(now.Add(5100*time.Millisecond)) {
		t.Fatalf("after 5 s then 1 s: %v %v, want about %v", u, err, now.Add(5*time.Second))
	}
	if err := bo.Publish(ctx, "k", now.Add(8*time.Second)); err != nil {
		t.Fatal(err)
	}
	if u, err := bo.Until(ctx, "k"); err != nil || u.Before(now.Add(7500*time.Millisecond)) {
		t.Fatalf("after 8 s: %v %v", u, err)
	}
}

// TestVenueBackoffRedisDown: with Redis refusing connections, or accepting
// them and never answering, each replica keeps its own model (its count,
// its own 429 back-off), Allow never waits much longer than Wait, and the
// outage is logged once.
func TestVenueBackoffRedisDown(t *testing.T) {
	o := testOptions(t)
	for _, tc := range []struct {
		name string
		addr string
	}{
		{"refused", closedAddr(t)},
		{"silent", testnet.Stalled(t).String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bo := o
			bo.Addr = tc.addr
			c, err := redisstore.New(bo)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			logs := &syncBuffer{}
			model := &venue.WindowLimiter{Window: time.Minute, Limit: func(string) int { return 5 }, Backoff: time.Second}
			l := venue.Share(model, venue.SharedOptions{Store: c.Backoffs(), Key: "okx/main", Refresh: 10 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			start := time.Now()
			at := time.Now()
			n := 0
			for i := range 20 {
				t0 := time.Now()
				if _, ok := l.Allow("trade", at); ok {
					n++
				}
				if d := time.Since(t0); d > 500*time.Millisecond {
					t.Fatalf("Allow %d took %v", i, d)
				}
				time.Sleep(15 * time.Millisecond)
			}
			if n != 5 {
				t.Errorf("allowed %d of 20 in one window, want the model's 5", n)
			}
			l2 := venue.Share(roomy(), venue.SharedOptions{Store: c.Backoffs(), Key: "okx/main", Logger: slog.New(slog.NewTextHandler(logs, nil))})
			l2.Observe(tooMany("3"), time.Now())
			if wait, ok := l2.Allow("trade", time.Now()); ok || wait < 2*time.Second {
				t.Errorf("own 429 while Redis is down: %v %v", wait, ok)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the loop took %v", d)
			}
			time.Sleep(1500 * time.Millisecond) // the background calls end (1 s timeout)
			if got := strings.Count(logs.String(), "shared venue back-off unavailable"); got != 2 {
				t.Errorf("outage logged %d times by two limiters, want once each:\n%s", got, logs)
			}
		})
	}
}

// countingBackoffs counts the reads of a real store.
type countingBackoffs struct {
	*redisstore.Backoffs
	reads atomic.Int64
}

func (c *countingBackoffs) Until(ctx context.Context, key string) (time.Time, error) {
	c.reads.Add(1)
	return c.Backoffs.Until(ctx, key)
}

// TestVenueBackoffCached: the shared deadline is read at most once per
// Refresh, not once per request: 1000 requests over one second ask Redis
// at most 7 times (every 150 ms).
func TestVenueBackoffCached(t *testing.T) {
	store := &countingBackoffs{Backoffs: open(t, testOptions(t)).Backoffs()}
	model := &venue.WindowLimiter{Window: time.Minute, Limit: func(string) int { return 1 << 20 }, Backoff: time.Second}
	l := venue.Share(model, venue.SharedOptions{Store: store, Key: "okx/main"})
	t0 := time.Now()
	for i := range 1000 {
		if _, ok := l.Allow("x", t0.Add(time.Duration(i)*time.Millisecond)); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	if n := store.reads.Load(); n < 1 || n > 7 {
		t.Fatalf("%d reads of Redis for 1000 requests over 1 s, want 1 to 7", n)
	}
}

// TestVenueBackoffFromAnswer: a rate limit the venue reports in the body
// of an HTTP 200 (Kraken's EAPI:Rate limit exceeded) seen by replica A
// backs replica B off too, for the decay of the REST counter; Kraken's
// trading-counter error stays A's own.
func TestVenueBackoffFromAnswer(t *testing.T) {
	o := testOptions(t)
	noCreds := venue.Credentials(func(context.Context, func(venue.Credential) error) error { return nil })
	replica := func() (*venue.SharedLimiter, *kraken.Venue) {
		v, err := kraken.New(kraken.Options{Credentials: noCreds})
		if err != nil {
			t.Fatal(err)
		}
		return venue.Share(v, venue.SharedOptions{Store: open(t, o).Backoffs(), Key: "kraken/main", Refresh: 10 * time.Millisecond}), v
	}
	a, _ := replica()
	b, _ := replica()
	ok200 := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}}

	a.Observe(ok200, time.Now())
	if d := a.ObserveAnswer(ok200, []byte(`{"error":["EOrder:Rate limit exceeded"]}`), time.Now()); d != 0 {
		t.Fatalf("trading counter shared: %v", d)
	}
	time.Sleep(50 * time.Millisecond)
	if _, ok := b.Allow(venue.OpOrderPlace, time.Now()); !ok {
		t.Fatal("B refused an order after A's trading-counter error")
	}

	seen := time.Now()
	d := a.ObserveAnswer(ok200, []byte(`{"error":["EAPI:Rate limit exceeded"],"result":{}}`), seen)
	if d < 5*time.Second || d > 6*time.Second {
		t.Fatalf("A's shared back-off %v, want the starter REST counter's 5.4 s", d)
	}
	var wait time.Duration
	ok := true
	for range 50 {
		if wait, ok = b.Allow(venue.OpAccountRead, time.Now()); !ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok || wait < 4*time.Second || wait > d+250*time.Millisecond {
		t.Fatalf("B after A's EAPI:Rate limit exceeded: %v %v, want about %v", wait, ok, d)
	}
}
