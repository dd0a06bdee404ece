package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/store/sqlite"
)

func TestTripStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := db.Trips()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	all := killswitch.Trip{Scope: killswitch.ScopeAll, Rule: killswitch.RulePanic, Actor: "admin uid=1000", Reason: "drill", EngagedAt: t0}
	got, created, err := s.Engage(ctx, all)
	if err != nil || !created || got.ID == 0 || !got.EngagedAt.Equal(t0) || got.Reason != "drill" {
		t.Fatalf("Engage = %+v %v %v", got, created, err)
	}
	// The same scope again: the active trip, not a second one.
	again, created, err := s.Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeAll, Rule: killswitch.RuleBot, Actor: "bot", EngagedAt: t0.Add(time.Second)})
	if err != nil || created || again.ID != got.ID || again.Rule != killswitch.RulePanic {
		t.Fatalf("second Engage = %+v %v %v", again, created, err)
	}
	for _, tr := range []killswitch.Trip{
		{Scope: killswitch.ScopeVenue, Target: "binance", Rule: "r", Actor: "a", EngagedAt: t0},
		{Scope: killswitch.ScopeToken, Target: "tok_abc", Rule: "r", Actor: "a", EngagedAt: t0},
		{Scope: killswitch.ScopeVenue, Target: "kraken", Rule: "r", Actor: "a", EngagedAt: t0},
	} {
		if _, _, err := s.Engage(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	active, err := s.Active(ctx)
	if err != nil || len(active) != 4 || active[0].ID != got.ID {
		t.Fatalf("Active = %+v %v", active, err)
	}
	// Clear one venue: the others stay.
	at := t0.Add(time.Hour)
	cleared, err := s.Clear(ctx, killswitch.Filter{Scope: killswitch.ScopeVenue, Target: "binance"}, "admin uid=1000", "fixed", at)
	if err != nil || len(cleared) != 1 || cleared[0].Target != "binance" || !cleared[0].ClearedAt.Equal(at) || cleared[0].ClearedBy != "admin uid=1000" {
		t.Fatalf("Clear = %+v %v", cleared, err)
	}
	if last, err := s.LastClear(ctx, killswitch.ScopeVenue, "binance"); err != nil || !last.Equal(at) {
		t.Fatalf("LastClear = %v %v", last, err)
	}
	if last, err := s.LastClear(ctx, killswitch.ScopeVenue, "kraken"); err != nil || !last.IsZero() {
		t.Fatalf("LastClear(never) = %v %v", last, err)
	}
	// A cleared scope can be engaged again (a new trip).
	re, created, err := s.Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeVenue, Target: "binance", Rule: "r", Actor: "a", EngagedAt: at})
	if err != nil || !created || re.ID == cleared[0].ID {
		t.Fatalf("re-engage = %+v %v %v", re, created, err)
	}
	// Clear everything; nothing left, nothing to clear twice.
	cleared, err = s.Clear(ctx, killswitch.Filter{}, "admin uid=1000", "all clear", at)
	if err != nil || len(cleared) != 4 {
		t.Fatalf("Clear all = %d %v", len(cleared), err)
	}
	if cleared, err = s.Clear(ctx, killswitch.Filter{}, "admin uid=1000", "again", at); err != nil || len(cleared) != 0 {
		t.Fatalf("Clear nothing = %+v %v", cleared, err)
	}
	if active, _ := s.Active(ctx); len(active) != 0 {
		t.Fatalf("active after clear: %+v", active)
	}
}

// TestTripStoreTwoProcesses: two handles on one file (two keystile
// processes) engaging the same scope at once create one trip; each sees
// the other's.
func TestTripStoreTwoProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	var dbs [2]*sqlite.DB
	for i := range dbs {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	var createdN atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created, err := dbs[i%2].Trips().Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a", EngagedAt: time.Now()})
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
	if a, err := dbs[1].Trips().Active(ctx); err != nil || len(a) != 1 {
		t.Fatalf("other handle: %+v %v", a, err)
	}
}

func TestLedger(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := db.LossLedger()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, a := range []string{"10", "20.5", "0.25"} {
		if err := l.Add(ctx, "lossguard/g/token:a/USDT/buy", t0.Add(time.Duration(i)*30*time.Minute), dec(a)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		since time.Time
		want  string
	}{{t0, "30.75"}, {t0.Add(time.Minute), "20.75"}, {t0.Add(time.Hour), "0.25"}, {t0.Add(2 * time.Hour), "0"}, {time.Time{}, "30.75"}} {
		if got, err := l.Sum(ctx, "lossguard/g/token:a/USDT/buy", tt.since); err != nil || !got.Equal(dec(tt.want)) {
			t.Errorf("Sum since %v = %s %v, want %s", tt.since, got, err, tt.want)
		}
	}
	if got, _ := l.Sum(ctx, "lossguard/g/token:b/USDT/buy", time.Time{}); !got.IsZero() {
		t.Errorf("other key: %s", got)
	}
	if err := l.Add(ctx, "k", t0, dec("-1")); err == nil {
		t.Error("negative amount accepted")
	}
}
