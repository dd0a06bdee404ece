package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/killswitch"
)

// Trips runs the killswitch.Store contract on stores from open, each on
// a fresh database.
func Trips(t *testing.T, open func(t *testing.T) killswitch.Store) {
	ctx := context.Background()
	t.Run("engage and clear", func(t *testing.T) {
		s := open(t)
		if active, err := s.Active(ctx); err != nil || len(active) != 0 {
			t.Fatalf("Active on an empty store = %+v %v", active, err)
		}
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
		all := killswitch.Trip{Scope: killswitch.ScopeAll, Rule: killswitch.RulePanic, Actor: "admin uid=1000", Reason: "drill", EngagedAt: t0}
		got, created, err := s.Engage(ctx, all)
		if err != nil || !created || got.ID == 0 || !got.EngagedAt.Equal(t0) || got.Reason != "drill" || got.Actor != all.Actor ||
			got.Rule != all.Rule || !got.ClearedAt.IsZero() {
			t.Fatalf("Engage = %+v %v %v", got, created, err)
		}
		// The same scope again: the active trip, not a second one.
		again, created, err := s.Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeAll, Rule: killswitch.RuleBot, Actor: "bot", EngagedAt: t0.Add(time.Second)})
		if err != nil || created || again.ID != got.ID || again.Rule != killswitch.RulePanic || !again.EngagedAt.Equal(t0) {
			t.Fatalf("second Engage = %+v %v %v", again, created, err)
		}
		for _, tr := range []killswitch.Trip{
			{Scope: killswitch.ScopeVenue, Target: "binance", Rule: "r", Actor: "a", EngagedAt: t0},
			{Scope: killswitch.ScopeToken, Target: "tok_abc", Rule: "r", Actor: "a", EngagedAt: t0},
			{Scope: killswitch.ScopeVenue, Target: "kraken", Rule: "r", Actor: "a", EngagedAt: t0},
		} {
			if _, created, err := s.Engage(ctx, tr); err != nil || !created {
				t.Fatalf("Engage %s %s: %v %v", tr.Scope, tr.Target, created, err)
			}
		}
		active, err := s.Active(ctx)
		if err != nil || len(active) != 4 || active[0].ID != got.ID || active[1].Target != "binance" || active[3].Target != "kraken" {
			t.Fatalf("Active = %+v %v", active, err)
		}
		// Clear one venue: the others stay.
		at := t0.Add(time.Hour)
		cleared, err := s.Clear(ctx, killswitch.Filter{Scope: killswitch.ScopeVenue, Target: "binance"}, "admin uid=1000", "fixed", at)
		if err != nil || len(cleared) != 1 || cleared[0].Target != "binance" || !cleared[0].ClearedAt.Equal(at) ||
			cleared[0].ClearedBy != "admin uid=1000" || cleared[0].ClearReason != "fixed" {
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
		// A scope filter alone clears every target of the scope.
		cleared, err = s.Clear(ctx, killswitch.Filter{Scope: killswitch.ScopeVenue}, "admin uid=1000", "venues", at)
		if err != nil || len(cleared) != 2 {
			t.Fatalf("Clear venues = %+v %v", cleared, err)
		}
		// Clear everything; nothing left, nothing to clear twice.
		later := at.Add(time.Minute)
		cleared, err = s.Clear(ctx, killswitch.Filter{}, "admin uid=1000", "all clear", later)
		if err != nil || len(cleared) != 2 {
			t.Fatalf("Clear all = %d %v", len(cleared), err)
		}
		if cleared, err = s.Clear(ctx, killswitch.Filter{}, "admin uid=1000", "again", later); err != nil || cleared == nil || len(cleared) != 0 {
			t.Fatalf("Clear nothing = %#v %v (want an empty slice)", cleared, err)
		}
		if active, _ := s.Active(ctx); len(active) != 0 {
			t.Fatalf("active after clear: %+v", active)
		}
		if last, err := s.LastClear(ctx, killswitch.ScopeAll, ""); err != nil || !last.Equal(later) {
			t.Fatalf("LastClear(all) = %v %v", last, err)
		}
	})

	t.Run("concurrent engage creates one trip", func(t *testing.T) {
		s := open(t)
		var createdN atomic.Int64
		ids := make([]int64, 20)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr, created, err := s.Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeVenue, Target: "binance", Rule: "r", Actor: "a", EngagedAt: time.Now()})
				if err != nil {
					t.Error(err)
				}
				ids[i] = tr.ID
				if created {
					createdN.Add(1)
				}
			}()
		}
		wg.Wait()
		if createdN.Load() != 1 {
			t.Fatalf("created %d trips, want 1", createdN.Load())
		}
		for _, id := range ids {
			if id != ids[0] || id == 0 {
				t.Fatalf("engagements returned trips %v, want one", ids)
			}
		}
	})
}

// LossLedger runs the killswitch.Ledger contract on ledgers from open,
// each on a fresh database.
func LossLedger(t *testing.T, open func(t *testing.T) killswitch.Ledger) {
	ctx := context.Background()
	dec := decimal.RequireFromString
	l := open(t)
	const key = "lossguard/g/token:a/USDT/buy"
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, a := range []string{"10", "20.5", "0.25"} {
		if err := l.Add(ctx, key, t0.Add(time.Duration(i)*30*time.Minute), dec(a)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		since time.Time
		want  string
	}{{t0, "30.75"}, {t0.Add(time.Minute), "20.75"}, {t0.Add(time.Hour), "0.25"}, {t0.Add(2 * time.Hour), "0"}, {time.Time{}, "30.75"}} {
		if got, err := l.Sum(ctx, key, tt.since); err != nil || !got.Equal(dec(tt.want)) {
			t.Errorf("Sum since %v = %s %v, want %s", tt.since, got, err, tt.want)
		}
	}
	if got, err := l.Sum(ctx, "lossguard/g/token:b/USDT/buy", time.Time{}); err != nil || !got.IsZero() {
		t.Errorf("other key: %s %v", got, err)
	}
	if err := l.Add(ctx, key, t0, dec("-1")); err == nil {
		t.Error("negative amount accepted")
	}
	// Exact decimals: many small amounts sum without rounding.
	for range 10 {
		if err := l.Add(ctx, "lossguard/exact", t0, dec("0.1")); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := l.Sum(ctx, "lossguard/exact", t0); err != nil || !got.Equal(dec("1")) {
		t.Errorf("ten times 0.1 = %s %v", got, err)
	}
}
