package killswitch_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// TestGuard: each scope refuses exactly what it covers, with
// token.ErrKilled (a kind of ErrFrozen), after the token's own checks.
func TestGuard(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(name string, venues ...string) (string, *token.Token) {
		raw, tok, err := tokens.Create(ctx, token.CreateRequest{Name: name, Venues: venues})
		if err != nil {
			t.Fatal(err)
		}
		return string(raw.Reveal()), tok
	}
	rawA, a := mint("a", "binance", "kraken")
	rawB, _ := mint("b", "binance")
	rawC, c := mint("c", "kraken")
	s := newSwitch(t, db.Trips(), nil)
	g := s.Guard(tokens)
	verify := func(raw, v string) error {
		_, err := g.Verify(ctx, raw, token.VerifyRequest{Venue: v, Source: loopback})
		return err
	}
	kill := func(e killswitch.Engagement) {
		e.Rule, e.Actor = "test", "test"
		if _, err := s.Engage(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	clear := func() {
		if _, err := s.Clear(ctx, killswitch.Clearing{Actor: "test", Reason: "next case"}); err != nil {
			t.Fatal(err)
		}
	}
	type want struct {
		raw, venue string
		killed     bool
	}
	tests := []struct {
		name string
		trip killswitch.Engagement
		want []want
	}{
		{"nothing engaged", killswitch.Engagement{}, []want{{rawA, "binance", false}, {rawC, "kraken", false}}},
		{"token", killswitch.Engagement{Scope: killswitch.ScopeToken, Target: string(a.ID)},
			[]want{{rawA, "binance", true}, {rawA, "kraken", true}, {rawB, "binance", false}, {rawC, "kraken", false}}},
		{"venue", killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "binance"},
			[]want{{rawA, "binance", true}, {rawB, "binance", true}, {rawA, "kraken", false}, {rawC, "kraken", false}}},
		{"all", killswitch.Engagement{Scope: killswitch.ScopeAll},
			[]want{{rawA, "binance", true}, {rawB, "binance", true}, {rawC, "kraken", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.trip.Scope != "" {
				kill(tt.trip)
				defer clear()
			}
			for _, w := range tt.want {
				err := verify(w.raw, w.venue)
				var re *token.RefusedError
				switch {
				case w.killed && (!errors.Is(err, token.ErrKilled) || !errors.Is(err, token.ErrFrozen) || !errors.As(err, &re) || re.ID == ""):
					t.Errorf("%s: %v, want ErrKilled with the token id", w.venue, err)
				case !w.killed && err != nil:
					t.Errorf("%s: %v, want accepted", w.venue, err)
				}
			}
		})
	}
	// The token's own checks come first: a revoked token stays revoked.
	if err := tokens.Revoke(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	kill(killswitch.Engagement{Scope: killswitch.ScopeAll})
	if err := verify(rawC, "kraken"); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked under the switch: %v", err)
	}
	clear()
	// POST /-/kill names no venue: only all and token trips refuse it.
	kill(killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "binance"})
	if _, err := g.Verify(ctx, rawA, token.VerifyRequest{AnyVenue: true, Source: loopback}); err != nil {
		t.Fatalf("any-venue request under a venue trip: %v", err)
	}
	kill(killswitch.Engagement{Scope: killswitch.ScopeToken, Target: string(a.ID)})
	if _, err := g.Verify(ctx, rawA, token.VerifyRequest{AnyVenue: true, Source: loopback}); !errors.Is(err, token.ErrKilled) {
		t.Fatalf("any-venue request of a killed token: %v", err)
	}
}

// TestGateDrain: requests already on their way to a venue when the switch
// engages are waited for (Engage returns after their answers), later ones
// are refused before they leave (the venue never sees them), and
// keystile's own cancel requests still pass.
func TestGateDrain(t *testing.T) {
	db, _ := openDB(t)
	s := newSwitch(t, db.Trips(), nil)
	var arrived, answered atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		if r.URL.Path == "/slow" {
			<-release
		}
		answered.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	rt := s.Transport("binance", srv.Client().Transport)
	other := s.Transport("kraken", srv.Client().Transport)
	do := func(rt http.RoundTripper, path string) error {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader("x=1"))
		resp, err := rt.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return err
	}
	// Three slow requests in flight.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := do(rt, "/slow"); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "three requests in flight", func() bool { return arrived.Load() == 3 })
	engaged := make(chan killswitch.Engaged)
	go func() {
		res, err := s.Engage(context.Background(), killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "binance", Rule: "r", Actor: "a"})
		if err != nil {
			t.Error(err)
		}
		engaged <- res
	}()
	// Engage waits for the three.
	select {
	case <-engaged:
		t.Fatal("Engage returned with requests still in flight")
	case <-time.After(100 * time.Millisecond):
	}
	// Meanwhile (already covered) new requests are refused unsent.
	err := do(rt, "/fast")
	if !errors.Is(err, killswitch.ErrEngaged) || !errors.Is(err, upstream.ErrRefused) {
		t.Fatalf("new request during the drain: %v", err)
	}
	close(release)
	res := <-engaged
	wg.Wait()
	if res.InFlight != 3 || res.Unfinished != 0 || answered.Load() != 3 {
		t.Fatalf("drain: %+v, answered %d", res, answered.Load())
	}
	if arrived.Load() != 3 {
		t.Fatalf("a refused request reached the venue: %d arrivals", arrived.Load())
	}
	if err := do(other, "/fast"); err != nil {
		t.Fatalf("another venue refused: %v", err)
	}
	// The other venue's request arrived.
	if n := arrived.Load(); n != 4 {
		t.Fatalf("arrivals %d", n)
	}
}

// TestGateDrainTimeout: a request that never ends is counted unfinished
// and Engage returns after DrainTimeout.
func TestGateDrainTimeout(t *testing.T) {
	db, _ := openDB(t)
	s := newSwitch(t, db.Trips(), nil, func(o *killswitch.Options) { o.DrainTimeout = 100 * time.Millisecond })
	block := make(chan struct{})
	var arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { arrived.Add(1); <-block }))
	defer srv.Close()
	defer close(block)
	rt := s.Transport("binance", srv.Client().Transport)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	waitFor(t, "the request at the venue", func() bool { return arrived.Load() == 1 })
	start := time.Now()
	res := panicAll(t, s)
	if res.InFlight != 1 || res.Unfinished != 1 || time.Since(start) > 2*time.Second {
		t.Fatalf("%+v after %s", res, time.Since(start))
	}
}
