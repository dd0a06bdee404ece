package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/okx"
)

// TestReplicasShareVenueBackoff: two servers on one database and Redis,
// with store.redis.replicas 2 and an OKX venue: a 429 one replica sees
// makes the other refuse for OKX's back-off, and each replica's OKX model counts against half
// of OKX's limits.
func TestReplicasShareVenueBackoff(t *testing.T) {
	cfg, _ := pgTestConfig(t)
	cfg.Store.Redis.Addr = redisTestAddr(t)
	cfg.Store.Redis.Replicas = 2
	vc := config.DefaultVenue()
	vc.Type, vc.BaseURL, vc.Credential = config.TypeOKX, "https://www.okx.com", "okx-main"
	cfg.Venues = map[string]config.Venue{"okx": vc}
	dirs := replicaDirs(t, cfg, 2)
	ca, cb := *cfg, *cfg
	ca.Store.ReplicaID, cb.Store.ReplicaID = "a", "b"
	a, _ := runServer(t, Env{}, dirs[0], &ca, ServerOptions{})
	b, _ := runServer(t, Env{}, dirs[1], &cb, ServerOptions{})
	cleanRedis(t, a)

	la, lb := a.venues["okx"].gv.Limiter, b.venues["okx"].gv.Limiter
	if _, ok := la.(*venue.SharedLimiter); !ok {
		t.Fatalf("A's OKX limiter is %T, want the shared one", la)
	}
	if _, ok := lb.Allow(venue.OpAccountRead, time.Now()); !ok {
		t.Fatal("B refused before any 429")
	}
	seen := time.Now()
	// No Retry-After: OKX's own back-off, 2 s (not venue.Share's 1 s).
	la.Observe(&http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}, seen)
	var wait time.Duration
	waitFor(t, "B to back off", func() bool {
		var ok bool
		wait, ok = lb.Allow(venue.OpAccountRead, time.Now())
		return !ok
	})
	if d := time.Since(seen); d > time.Second || wait > 2*time.Second+250*time.Millisecond || wait < 2*time.Second-d-100*time.Millisecond { // the deadline is read back from Redis as a remaining time: a few ms of rounding
		t.Fatalf("B backed off %v after A's 429, for %v (want the rest of 2 s)", d, wait)
	}

	// Each replica's own model: half of OKX's limit per window (less 5%).
	impl := b.venues["okx"].gv.Impl.(venue.RateLimiter)
	t0 := time.Unix(1700000000, 0)
	half := okx.Limit(venue.OpOrderPlace) / 2
	want := half - half/20
	n := 0
	for range 1000 {
		if _, ok := impl.Allow(venue.OpOrderPlace, t0); !ok {
			break
		}
		n++
	}
	if n != want {
		t.Fatalf("B's OKX model allowed %d orders per window, want %d (half of %d less 5%%)", n, want, okx.Limit(venue.OpOrderPlace))
	}
}
