package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestBudgetReserve(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Budgets()
	t0 := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	day := policy.Claim{Key: "token:a/daily/USDT/day:2025-01-06", Since: t0.Add(-12 * time.Hour), Limit: dec("100")}
	hour := policy.Claim{Key: "account:x/hourly/USDT/rolling:1h", Since: t0.Add(-time.Hour), Limit: dec("50")}

	ids, err := s.Reserve(ctx, t0, dec("30.5"), []policy.Claim{day, hour})
	if err != nil || len(ids) != 2 {
		t.Fatalf("Reserve = %v, %v", ids, err)
	}
	// 30.5 + 20 > 50 on the second claim: nothing is written, the first
	// claim included (all or none).
	_, err = s.Reserve(ctx, t0, dec("20"), []policy.Claim{day, hour})
	var ex *policy.ExceededError
	if !errors.As(err, &ex) || ex.Index != 1 || ex.Key != hour.Key || !ex.Used.Equal(dec("30.5")) || !ex.Limit.Equal(dec("50")) {
		t.Fatalf("over the hourly limit: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("69.5"), []policy.Claim{day}); err != nil {
		t.Fatalf("the refused reservation must not count: %v", err) // 30.5 + 69.5 = 100 exactly
	}
	if err := s.Check(ctx, t0, dec("0.000000001"), []policy.Claim{day}); !errors.As(err, &ex) || ex.Index != 0 {
		t.Fatalf("Check over the limit: %v", err)
	}
	// Release gives the first reservation back on both claims.
	if err := s.Release(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, t0, dec("30.5"), []policy.Claim{day, hour}); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := s.Release(ctx, []int64{999999}); err != nil {
		t.Fatalf("unknown id: %v", err)
	}
	// Entries before Since do not count (rolling window).
	later := hour
	later.Since = t0.Add(time.Minute)
	if _, err := s.Reserve(ctx, t0.Add(61*time.Minute), dec("50"), []policy.Claim{later}); err != nil {
		t.Fatalf("window moved on: %v", err)
	}
	// Survives a restart.
	db.Close()
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = db.Budgets()
	if err := s.Check(ctx, t0, dec("30.6"), []policy.Claim{day}); !errors.As(err, &ex) { // 69.5 kept
		t.Fatalf("after reopen the day budget must still hold 69.5: %v", err)
	}
	// Prune drops old entries.
	if err := s.Prune(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, t0, dec("100"), []policy.Claim{day}); err != nil {
		t.Fatalf("after prune: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("-1"), []policy.Claim{day}); err == nil {
		t.Fatal("negative amount accepted")
	}
	if _, err := s.Reserve(ctx, t0, dec("1"), nil); err == nil {
		t.Fatal("no claims accepted")
	}
}

// TestBudgetReserveConcurrent: 100 goroutines reserve 60 against 1000:
// exactly 16 succeed, also when the store is reopened halfway.
func TestBudgetReserveConcurrent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	claim := []policy.Claim{{Key: "token:a/daily/USDT/day:2025-01-06", Since: time.Unix(0, 0), Limit: dec("1000")}}
	var ok atomic.Int32
	for half := range 2 {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				_, err := db.Budgets().Reserve(ctx, time.Now(), dec("60"), claim)
				var ex *policy.ExceededError
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.As(err, &ex):
					t.Errorf("unexpected error: %v", err)
				}
			})
		}
		wg.Wait()
		db.Close()
		if half == 0 && ok.Load() != 16 {
			t.Fatalf("first half: %d, want 16", ok.Load())
		}
	}
	if ok.Load() != 16 {
		t.Fatalf("%d reservations succeeded, want 16", ok.Load())
	}
}
