package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// used is what the store says key holds since since (Check with a limit
// below anything reports it).
func used(t *testing.T, s *sqlite.BudgetStore, key string, since time.Time) decimal.Decimal {
	t.Helper()
	err := s.Check(context.Background(), since, decimal.Zero, []policy.Claim{{Key: key, Since: since, Limit: dec("-1")}})
	var ex *policy.ExceededError
	if !errors.As(err, &ex) {
		t.Fatalf("Check: %v", err)
	}
	return ex.Used
}

// checkTotals recomputes budget_totals from budget_entries and compares.
func checkTotals(t *testing.T, db *sqlite.DB) {
	t.Helper()
	ctx := context.Background()
	want := map[string]decimal.Decimal{}
	rows, err := db.SQL().QueryContext(ctx, `SELECT key, at, amount FROM budget_entries`)
	if err != nil {
		t.Fatal(err)
	}
	widths := []int64{int64(time.Minute), int64(time.Hour), int64(24 * time.Hour)}
	for rows.Next() {
		var (
			key, a string
			at     int64
		)
		if err := rows.Scan(&key, &at, &a); err != nil {
			t.Fatal(err)
		}
		for l, w := range widths {
			b := at / w
			if at < 0 && at%w != 0 {
				b--
			}
			k := fmt.Sprint(key, "|", l, "|", b)
			want[k] = want[k].Add(dec(a))
		}
	}
	rows.Close()
	got := map[string]decimal.Decimal{}
	rows, err = db.SQL().QueryContext(ctx, `SELECT key, level, bucket, amount FROM budget_totals`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			key, a    string
			l, bucket int64
		)
		if err := rows.Scan(&key, &l, &bucket, &a); err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprint(key, "|", l, "|", bucket)] = dec(a)
	}
	rows.Close()
	for k, v := range want {
		if v.IsZero() {
			delete(want, k)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("budget_totals has %d rows, entries make %d", len(got), len(want))
	}
	for k, v := range want {
		if !got[k].Equal(v) {
			t.Fatalf("budget_totals[%s] = %s, entries sum to %s", k, got[k], v)
		}
	}
}

// TestBudgetTotalsRelease: a release subtracts exactly what it deletes, at
// every level, and an emptied bucket disappears.
func TestBudgetTotalsRelease(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := db.Budgets()
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
	checkTotals(t, db)
	if err := s.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	checkTotals(t, db)
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
	var n int
	if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM budget_totals`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d totals rows left after releasing everything (%v)", n, err)
	}
	// A released amount is available again, exactly.
	if _, err := s.Reserve(ctx, t0, dec("1000"), claims); err != nil {
		t.Fatalf("full limit after release: %v", err)
	}
	if _, err := s.Reserve(ctx, t0, dec("0.000000001"), claims); err == nil {
		t.Fatal("over the limit")
	}
}

// TestBudgetTotalsWindowEdges: the sum of a window equals the sum of its
// entries for window starts on, just before and just after every bucket
// edge (minute, hour, UTC day), with entries placed on and around them,
// through releases and prunes.
func TestBudgetTotalsWindowEdges(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := db.Budgets()
	const key = "account:x/w/USDT/rolling:48h0m0s"
	base := time.Date(2025, 3, 30, 22, 58, 0, 0, time.UTC) // spans an hour, a day and a DST change in Europe
	type entry struct {
		at     time.Time
		amount decimal.Decimal
		id     int64
	}
	var entries []entry
	rng := rand.New(rand.NewPCG(1, 2))
	var offsets []time.Duration
	for _, edge := range []time.Duration{0, 2 * time.Minute, 62 * time.Minute, 25*time.Hour + 2*time.Minute} {
		for _, d := range []time.Duration{-time.Minute, -time.Second, -time.Nanosecond, 0, time.Nanosecond, time.Second, 59 * time.Second} {
			offsets = append(offsets, edge+d)
		}
	}
	for range 150 {
		offsets = append(offsets, time.Duration(rng.Int64N(int64(30*time.Hour))))
	}
	for i, off := range offsets {
		at := base.Add(off)
		amt := decimal.New(rng.Int64N(100000)+1, -int32(rng.IntN(8)))
		ids, err := s.Reserve(ctx, at, amt, []policy.Claim{{Key: key, Since: base.Add(-time.Hour), Limit: dec("1e12")}})
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		entries = append(entries, entry{at, amt, ids[0]})
	}
	verify := func(stage string) {
		t.Helper()
		checkTotals(t, db)
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

// TestBudgetTotalsMigration: a database from before migration 6 gets its
// totals summed from the entries it holds.
func TestBudgetTotalsMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Budgets()
	key := "token:a/daily/USDT/day:2025-01-06@UTC"
	since := time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)
	for i := range 30 {
		if _, err := s.Reserve(ctx, since.Add(time.Duration(i)*7*time.Minute), dec("33.3"),
			[]policy.Claim{{Key: key, Since: since, Limit: dec("1000")}}); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := db.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Turn it into a version 5 database: undo migration 6 and every later
	// one (their tables go too, so they are re-created on open).
	undo := "DROP TABLE budget_totals;"
	for _, tbl := range tablesFromMigrations(t, 7) {
		undo += " DROP TABLE " + tbl + ";"
	}
	if _, err := db.SQL().ExecContext(ctx, undo+" DELETE FROM schema_migrations WHERE version >= 6"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(ctx); err != nil || v != latest {
		t.Fatalf("schema version %d, %v", v, err)
	}
	checkTotals(t, db)
	if u := used(t, db.Budgets(), key, since.Add(61*time.Minute)); !u.Equal(dec("699.3")) { // entries 9..29, 21 × 33.3
		t.Fatalf("used %s", u)
	}
	_, err = db.Budgets().Reserve(ctx, since.Add(5*time.Hour), dec("1.1"), []policy.Claim{{Key: key, Since: since, Limit: dec("1000")}})
	var ex *policy.ExceededError
	if !errors.As(err, &ex) || !ex.Used.Equal(dec("999")) {
		t.Fatalf("after migration: %v", err)
	}
}

// tablesFromMigrations lists the tables that the migrations numbered from
// version on create, read from the migration files.
func tablesFromMigrations(t *testing.T, version int) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("migrations", "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?i)CREATE TABLE (?:IF NOT EXISTS )?([a-z_0-9]+)`)
	var out []string
	for _, f := range files {
		var n int
		if _, err := fmt.Sscanf(filepath.Base(f), "%04d_", &n); err != nil || n < version {
			continue
		}
		b, err := os.ReadFile(f) // #nosec G304 -- the package's own migration files
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
	}
	return out
}
