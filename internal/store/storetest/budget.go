package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// used is what s says key holds since since (a Check against a limit
// below anything reports it).
func used(t *testing.T, s policy.BudgetStore, key string, since time.Time) decimal.Decimal {
	t.Helper()
	err := s.Check(context.Background(), since, decimal.Zero, []policy.Claim{{Key: key, Since: since, Limit: dec("-1")}})
	var ex *policy.ExceededError
	if !errors.As(err, &ex) {
		t.Fatalf("Check: %v", err)
	}
	return ex.Used
}

// Budgets checks a policy.BudgetStore: reservations are all or none and
// refused exactly at the limit, releases and prunes give back exactly
// what they delete, windows sum exactly around every bucket edge, and
// concurrent reservations never exceed a limit. open returns a store on
// a fresh, empty database.
func Budgets(t *testing.T, open func(t *testing.T) policy.BudgetStore) {
	t.Run("Reserve", func(t *testing.T) { budgetReserve(t, open(t)) })
	t.Run("Release", func(t *testing.T) { budgetRelease(t, open(t)) })
	t.Run("WindowEdges", func(t *testing.T) { budgetWindowEdges(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { budgetConcurrent(t, open(t)) })
}

func budgetReserve(t *testing.T, s policy.BudgetStore) {
	ctx := context.Background()
	t0 := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	day := policy.Claim{Key: "token:a/daily/USDT/day:2025-01-06", Since: t0.Add(-12 * time.Hour), Limit: dec("100")}
	hour := policy.Claim{Key: "account:x/hourly/USDT/rolling:1h", Since: t0.Add(-time.Hour), Limit: dec("50")}

	ids, err := s.Reserve(ctx, t0, dec("30.5"), []policy.Claim{day, hour})
	if err != nil || len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("Reserve = %v, %v", ids, err)
	}
	// 30.5 + 20 > 50 on the second claim: nothing is written, the first
	// claim included (all or none).
	_, err = s.Reserve(ctx, t0, dec("20"), []policy.Claim{day, hour})
	var ex *policy.ExceededError
	if !errors.As(err, &ex) || ex.Index != 1 || ex.Key != hour.Key || !ex.Used.Equal(dec("30.5")) ||
		!ex.Amount.Equal(dec("20")) || !ex.Limit.Equal(dec("50")) {
		t.Fatalf("over the hourly limit: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("69.5"), []policy.Claim{day}); err != nil {
		t.Fatalf("the refused reservation must not count: %v", err) // 30.5 + 69.5 = 100 exactly
	}
	if err := s.Check(ctx, t0, dec("0.000000001"), []policy.Claim{day}); !errors.As(err, &ex) || ex.Index != 0 || !ex.Used.Equal(dec("100")) {
		t.Fatalf("Check over the limit: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("0.000000001"), []policy.Claim{day}); !errors.As(err, &ex) {
		t.Fatalf("Reserve over the limit: %v", err)
	}
	// Release gives the first reservation back on both claims.
	if err := s.Release(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, t0, dec("30.5"), []policy.Claim{day, hour}); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := s.Check(ctx, t0, dec("30.50001"), []policy.Claim{day, hour}); !errors.As(err, &ex) || ex.Index != 0 {
		t.Fatalf("after release, over the day limit: %v", err)
	}
	if err := s.Release(ctx, []int64{999999}); err != nil {
		t.Fatalf("unknown id: %v", err)
	}
	if err := s.Release(ctx, nil); err != nil {
		t.Fatalf("no ids: %v", err)
	}
	// Entries before Since do not count (rolling window).
	later := hour
	later.Since = t0.Add(time.Minute)
	if _, err := s.Reserve(ctx, t0.Add(61*time.Minute), dec("50"), []policy.Claim{later}); err != nil {
		t.Fatalf("window moved on: %v", err)
	}
	// Prune drops old entries.
	if err := s.Prune(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, t0, dec("100"), []policy.Claim{day}); err != nil {
		t.Fatalf("after prune: %v", err)
	}
	if u := used(t, s, later.Key, time.Time{}); !u.Equal(dec("50")) {
		t.Fatalf("prune took a young entry: %s left", u)
	}
	// A key claimed twice in one reservation counts twice.
	twice := policy.Claim{Key: "token:b/daily/USDT/day", Since: t0.Add(-time.Hour), Limit: dec("10")}
	if ids, err := s.Reserve(ctx, t0, dec("4"), []policy.Claim{twice, twice}); err != nil || len(ids) != 2 {
		t.Fatalf("one key twice: %v %v", ids, err)
	}
	if u := used(t, s, twice.Key, twice.Since); !u.Equal(dec("8")) {
		t.Fatalf("one key twice: used %s, want 8", u)
	}
	// A zero amount is a reservation of nothing.
	if ids, err := s.Reserve(ctx, t0, decimal.Zero, []policy.Claim{twice}); err != nil || len(ids) != 1 {
		t.Fatalf("zero amount: %v %v", ids, err)
	} else if err := s.Release(ctx, ids); err != nil {
		t.Fatalf("release of a zero amount: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("-1"), []policy.Claim{day}); err == nil {
		t.Fatal("negative amount accepted")
	}
	if _, err := s.Reserve(ctx, t0, dec("1"), nil); err == nil {
		t.Fatal("no claims accepted")
	}
}

// budgetRelease: a release subtracts exactly what it deletes, twice is
// harmless, and a released amount is available again exactly.
func budgetRelease(t *testing.T, s policy.BudgetStore) {
	ctx := context.Background()
	t0 := time.Date(2025, 1, 6, 12, 0, 30, 0, time.UTC)
	day := "token:a/daily/USDT/day:2025-01-06@UTC"
	roll := "token:a/h/USDT/rolling:1h0m0s"
	claims := []policy.Claim{{Key: day, Since: t0.Truncate(24 * time.Hour), Limit: dec("1000")},
		{Key: roll, Since: t0.Add(-time.Hour), Limit: dec("1000")}}
	a, err := s.Reserve(ctx, t0, dec("10.25"), claims)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Reserve(ctx, t0.Add(time.Second), dec("0.000001"), claims)
	if err != nil {
		t.Fatal(err)
	}
	if u := used(t, s, day, t0.Truncate(24*time.Hour)); !u.Equal(dec("10.250001")) {
		t.Fatalf("used %s", u)
	}
	if err := s.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{day, roll} {
		if u := used(t, s, k, t0.Add(-time.Hour)); !u.Equal(dec("0.000001")) {
			t.Fatalf("%s after release: used %s", k, u)
		}
	}
	if err := s.Release(ctx, a); err != nil { // twice: nothing left to subtract
		t.Fatal(err)
	}
	if err := s.Release(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{day, roll} {
		if u := used(t, s, k, time.Time{}); !u.IsZero() {
			t.Fatalf("%s after releasing everything: used %s", k, u)
		}
	}
	if _, err := s.Reserve(ctx, t0, dec("1000"), claims); err != nil {
		t.Fatalf("full limit after release: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("0.000000001"), claims); err == nil {
		t.Fatal("over the limit")
	}
}

// budgetWindowEdges: the sum of a window equals the sum of its entries
// for window starts on, just before and just after every bucket edge
// (minute, hour, UTC day), with entries on and around them, through
// releases and prunes.
func budgetWindowEdges(t *testing.T, s policy.BudgetStore) {
	ctx := context.Background()
	const key = "account:x/w/USDT/rolling:48h0m0s"
	base := time.Date(2025, 3, 30, 22, 58, 0, 0, time.UTC) // spans an hour, a day and a DST change in Europe
	type entry struct {
		at     time.Time
		amount decimal.Decimal
		id     int64
	}
	var entries []entry
	rng := rand.New(rand.NewPCG(1, 2)) // #nosec G404 -- reproducible test data
	var offsets []time.Duration
	for _, edge := range []time.Duration{0, 2 * time.Minute, 62 * time.Minute, 25*time.Hour + 2*time.Minute} {
		for _, d := range []time.Duration{-time.Minute, -time.Second, -time.Nanosecond, 0, time.Nanosecond, time.Second, 59 * time.Second} {
			offsets = append(offsets, edge+d)
		}
	}
	for range 120 {
		offsets = append(offsets, time.Duration(rng.Int64N(int64(30*time.Hour))))
	}
	for i, off := range offsets {
		at := base.Add(off)
		amt := decimal.New(rng.Int64N(100000)+1, -int32(rng.IntN(8))) // #nosec G115 -- below 8
		ids, err := s.Reserve(ctx, at, amt, []policy.Claim{{Key: key, Since: base.Add(-time.Hour), Limit: dec("1e12")}})
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		entries = append(entries, entry{at, amt, ids[0]})
	}
	verify := func(stage string) {
		t.Helper()
		var sinces []time.Time
		for _, e := range entries {
			sinces = append(sinces, e.at, e.at.Add(time.Nanosecond), e.at.Add(-time.Nanosecond))
		}
		for _, off := range offsets[:28] {
			sinces = append(sinces, base.Add(off).Truncate(time.Minute), base.Add(off).Truncate(time.Hour))
		}
		sinces = append(sinces, time.Time{}, time.Unix(0, 0), base.Add(-48*time.Hour), base.Add(48*time.Hour))
		for _, since := range sinces {
			want := decimal.Zero
			for _, e := range entries {
				if e.id != 0 && !e.at.Before(since) {
					want = want.Add(e.amount)
				}
			}
			if got := used(t, s, key, since); !got.Equal(want) {
				t.Fatalf("%s: since %s: store says %s, entries sum to %s", stage, since.Format(time.RFC3339Nano), got, want)
			}
		}
	}
	verify("after reserve")
	// Release a third, in one call and one by one.
	var batch []int64
	for i := range entries {
		if i%3 == 0 {
			batch = append(batch, entries[i].id)
			entries[i].id = 0
		}
	}
	if err := s.Release(ctx, batch[:len(batch)/2]); err != nil {
		t.Fatal(err)
	}
	for _, id := range batch[len(batch)/2:] {
		if err := s.Release(ctx, []int64{id}); err != nil {
			t.Fatal(err)
		}
	}
	verify("after release")
	// Prune at cuts inside a minute, an hour and a day.
	for _, cut := range []time.Duration{90 * time.Second, 61*time.Minute + 30*time.Second, 26*time.Hour + 17*time.Second} {
		before := base.Add(cut)
		if err := s.Prune(ctx, before); err != nil {
			t.Fatal(err)
		}
		for i := range entries {
			if entries[i].at.Before(before) {
				entries[i].id = 0
			}
		}
		verify(fmt.Sprint("after prune at +", cut))
	}
}

// budgetConcurrent: 50 goroutines reserve 60 against 1000, each also
// against a second budget of its own: exactly 16 succeed and the window
// holds exactly 960.
func budgetConcurrent(t *testing.T, s policy.BudgetStore) {
	ctx := context.Background()
	shared := policy.Claim{Key: "token:a/daily/USDT/day:2025-01-06", Since: time.Unix(0, 0), Limit: dec("1000")}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			own := policy.Claim{Key: fmt.Sprint("token:b", i, "/daily/USDT"), Since: time.Unix(0, 0), Limit: dec("100")}
			claims := []policy.Claim{own, shared}
			if i%2 == 1 {
				claims = []policy.Claim{shared, own} // either order: no deadlock
			}
			_, err := s.Reserve(ctx, time.Now(), dec("60"), claims)
			var ex *policy.ExceededError
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.As(err, &ex) || ex.Key != shared.Key:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 16 {
		t.Fatalf("%d reservations succeeded, want 16", ok.Load())
	}
	if u := used(t, s, shared.Key, time.Time{}); !u.Equal(dec("960")) {
		t.Fatalf("used %s, want 960", u)
	}
}
