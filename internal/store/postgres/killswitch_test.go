package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/store/postgres"
)

// TestTripsAcrossReplicas: replicas engaging one scope at once create one
// trip, which every replica then sees; the "killswitch" version moves on
// each engagement and clear that changed something, and only then.
func TestTripsAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 3)
	var createdN atomic.Int64
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created, err := dbs[i%len(dbs)].Trips().Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a", EngagedAt: time.Now()})
			if err != nil {
				t.Error(err)
			}
			if created {
				createdN.Add(1)
			}
		}()
	}
	wg.Wait()
	if createdN.Load() != 1 {
		t.Fatalf("created %d trips, want 1", createdN.Load())
	}
	for i, db := range dbs {
		if a, err := db.Trips().Active(ctx); err != nil || len(a) != 1 || a[0].Scope != killswitch.ScopeAll {
			t.Fatalf("replica %d: %+v %v", i, a, err)
		}
		if v := mustVersion(t, db, postgres.TopicKillSwitch); v != 1 {
			t.Fatalf("replica %d: killswitch version %d after one trip, want 1", i, v)
		}
	}
	now := time.Now()
	if c, err := dbs[1].Trips().Clear(ctx, killswitch.Filter{Scope: killswitch.ScopeVenue}, "admin", "nothing", now); err != nil || len(c) != 0 {
		t.Fatalf("Clear of nothing = %+v %v", c, err)
	}
	if v := mustVersion(t, dbs[0], postgres.TopicKillSwitch); v != 1 {
		t.Fatalf("a Clear that cleared nothing moved the version to %d", v)
	}
	if c, err := dbs[1].Trips().Clear(ctx, killswitch.Filter{}, "admin", "done", now); err != nil || len(c) != 1 {
		t.Fatalf("Clear = %+v %v", c, err)
	}
	if v := mustVersion(t, dbs[2], postgres.TopicKillSwitch); v != 2 {
		t.Fatalf("killswitch version %d after the clear, want 2", v)
	}
	if a, err := dbs[0].Trips().Active(ctx); err != nil || len(a) != 0 {
		t.Fatalf("replica 0 after replica 1 cleared: %+v %v", a, err)
	}
	if last, err := dbs[2].Trips().LastClear(ctx, killswitch.ScopeAll, ""); err != nil || !last.Equal(now.UTC()) {
		t.Fatalf("LastClear on replica 2 = %v %v, want %v", last, err, now.UTC())
	}
}
