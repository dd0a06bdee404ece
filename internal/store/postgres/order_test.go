package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// replicas opens n pools on one fresh schema, standing for n gateway
// replicas.
func replicas(t testing.TB, n int) []*postgres.DB {
	t.Helper()
	dsn := testDSN(t)
	dbs := make([]*postgres.DB, n)
	for i := range dbs {
		dbs[i] = openDSN(t, dsn)
	}
	return dbs
}

// checkTotals recomputes budget_totals from budget_entries and compares.
func checkTotals(t testing.TB, db *postgres.DB) {
	t.Helper()
	ctx := context.Background()
	want := map[string]decimal.Decimal{}
	rows, err := db.Pool().Query(ctx, `SELECT key, at, amount FROM budget_entries`)
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
	rows, err = db.Pool().Query(ctx, `SELECT key, level, bucket, amount FROM budget_totals`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			key, a string
			l      int32
			bucket int64
		)
		if err := rows.Scan(&key, &l, &bucket, &a); err != nil {
			t.Fatal(err)
		}
		if dec(a).IsZero() {
			t.Errorf("totals row %s|%d|%d holds zero", key, l, bucket)
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
		t.Fatalf("%d totals rows, entries make %d", len(got), len(want))
	}
	for k, v := range want {
		if !got[k].Equal(v) {
			t.Fatalf("totals %s = %s, entries sum to %s", k, got[k], v)
		}
	}
}

// TestBudgetAcrossReplicas: 3 replicas × 50 concurrent reservations of 60
// against 1000, each also against a budget of its replica in varying
// order: exactly 16 succeed, the window holds exactly 960 and the totals
// match the entries.
func TestBudgetAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicas(t, 3)
	shared := policy.Claim{Key: "token:a/daily/USDT/day:2025-01-06", Since: time.Unix(0, 0), Limit: dec("1000")}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for r, db := range dbs {
		for i := range 50 {
			wg.Go(func() {
				own := policy.Claim{Key: fmt.Sprint("account:r", r, "/daily/USDT"), Since: time.Unix(0, 0), Limit: dec("1000000")}
				claims := []policy.Claim{shared, own}
				if i%2 == 1 {
					claims = []policy.Claim{own, shared}
				}
				_, err := db.Budgets().Reserve(ctx, time.Now(), dec("60"), claims)
				var ex *policy.ExceededError
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.As(err, &ex) || ex.Key != shared.Key:
					t.Errorf("replica %d: unexpected error: %v", r, err)
				}
			})
		}
	}
	wg.Wait()
	if ok.Load() != 16 {
		t.Fatalf("%d reservations succeeded across 3 replicas, want 16", ok.Load())
	}
	var ex *policy.ExceededError
	if err := dbs[2].Budgets().Check(ctx, time.Now(), dec("40"), []policy.Claim{shared}); err != nil {
		t.Fatalf("960 + 40 fits: %v", err)
	}
	if err := dbs[1].Budgets().Check(ctx, time.Now(), dec("40.000001"), []policy.Claim{shared}); !errors.As(err, &ex) || !ex.Used.Equal(dec("960")) {
		t.Fatalf("used across replicas: %v", err)
	}
	checkTotals(t, dbs[0])
}

// TestIdemAcrossReplicas: 200 keys, each claimed from two replicas at
// once: exactly one claim per key, and the loser is told the winner.
func TestIdemAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicas(t, 2)
	at := time.Now()
	var wins [200]atomic.Int32
	var wg sync.WaitGroup
	for k := range 200 {
		for r, db := range dbs {
			wg.Go(func() {
				rec := idem.Record{Scope: "tok/binance", Key: fmt.Sprint("k", k), Fingerprint: []byte{1}, ClientOrderID: "c",
					State: idem.StatePending, Owner: fmt.Sprint("r", r), Created: at, Updated: at}
				stored, claimed, err := db.Idempotency().Claim(ctx, rec, at.Add(-time.Hour))
				switch {
				case err != nil:
					t.Errorf("key %d replica %d: %v", k, r, err)
				case claimed:
					wins[k].Add(1)
				case stored.Owner != fmt.Sprint("r", 1-r):
					t.Errorf("key %d: replica %d lost to %q", k, r, stored.Owner)
				}
			})
		}
	}
	wg.Wait()
	for k := range wins {
		if n := wins[k].Load(); n != 1 {
			t.Fatalf("key %d claimed %d times", k, n)
		}
	}
	var n int
	if err := dbs[0].Pool().QueryRow(ctx, `SELECT count(*) FROM idempotency`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("%d rows, %v", n, err)
	}
}

// TestLedgerAcrossReplicas: 3 replicas × 50 ledger writes of 60 against
// 1000, each key written by two replicas: 16 orders open, each key at
// most once, with exactly 16 intents.
func TestLedgerAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicas(t, 3)
	for _, db := range dbs {
		if _, err := postgres.UseTestIntents(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	opened := map[string]int{}
	var wg sync.WaitGroup
	for r, db := range dbs {
		for i := range 50 {
			wg.Go(func() {
				n := (r*50 + i) / 2 // two writes per key, from two replicas mostly
				w := storetest.LedgerWrite(n, "1000")
				w.Intent.RequestID = fmt.Sprint("r", r, ".", i)
				w.Key.Record.Owner = w.Intent.RequestID
				err := db.Ledger().Open(ctx, w)
				var ex *policy.ExceededError
				switch {
				case err == nil:
					mu.Lock()
					opened[w.Key.Record.Key]++
					mu.Unlock()
				case errors.As(err, &ex), errors.Is(err, ledger.ErrKeyTaken):
				default:
					t.Errorf("unexpected: %v", err)
				}
			})
		}
	}
	wg.Wait()
	total := 0
	for k, c := range opened {
		if c != 1 {
			t.Fatalf("key %s opened %d times", k, c)
		}
		total += c
	}
	if total != 16 {
		t.Fatalf("%d orders opened, want 16", total)
	}
	if got := storedIntents(t, dbs[0]); len(got) != 16 {
		t.Fatalf("%d intents, want 16", len(got))
	}
	checkTotals(t, dbs[1])
}

// TestLedgerAtomic: a refused budget leaves no intent and no claim; a
// failed intent leaves no reservation and no claim; the intent log is
// told whether the transaction committed.
func TestLedgerAtomic(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	ti, err := postgres.UseTestIntents(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	lg := db.Ledger()
	if err := lg.Open(ctx, storetest.LedgerWrite(1, "100")); err != nil {
		t.Fatal(err)
	}
	var ex *policy.ExceededError
	if err := lg.Open(ctx, storetest.LedgerWrite(2, "100")); !errors.As(err, &ex) {
		t.Fatalf("over budget: %v", err)
	}
	fail := storetest.LedgerWrite(3, "1000")
	fail.Intent.RequestID = "fail-3"
	if err := lg.Open(ctx, fail); err == nil || fail.Budget.IDs != nil {
		t.Fatalf("failed intent: %v, ids %v", err, fail.Budget.IDs)
	}
	taken := storetest.LedgerWrite(1, "1000")
	taken.Intent.RequestID = "r1-again"
	if err := lg.Open(ctx, taken); !errors.Is(err, ledger.ErrKeyTaken) {
		t.Fatalf("taken: %v", err)
	}
	for _, k := range []string{"k2", "k3"} {
		if _, err := db.Idempotency().Get(ctx, "tok_1/binance", k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("key %s of a refused write is stored: %v", k, err)
		}
	}
	var entries int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM budget_entries`).Scan(&entries); err != nil || entries != 1 {
		t.Fatalf("%d budget entries, want 1 (%v)", entries, err)
	}
	if got := storedIntents(t, db); len(got) != 1 || !got["r1"] {
		t.Fatalf("intents %v, want r1", got)
	}
	// Only r1 reached the log: the budget and the key are checked
	// before the intent is appended.
	if ti.Committed() != 1 || ti.RolledBack() != 0 {
		t.Fatalf("after calls: %d committed, %d rolled back", ti.Committed(), ti.RolledBack())
	}
	checkTotals(t, db)
}

// TestLedgerCommitFailureIsReported: a transaction the server refuses at
// COMMIT (a deferred constraint) reports an error, stores nothing, and
// tells the intent log it did not commit.
func TestLedgerCommitFailureIsReported(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	ti, err := postgres.UseTestIntents(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.request_id = 'r2' THEN INSERT INTO child VALUES (42); END IF; RETURN NEW; END $$;
		CREATE TRIGGER poison AFTER INSERT ON test_intents FOR EACH ROW EXECUTE FUNCTION poison()`); err != nil {
		t.Fatal(err)
	}
	if err := db.Ledger().Open(ctx, storetest.LedgerWrite(1, "1000")); err != nil {
		t.Fatal(err)
	}
	w := storetest.LedgerWrite(2, "1000")
	if err := db.Ledger().Open(ctx, w); err == nil || w.Budget.IDs != nil {
		t.Fatalf("a write whose commit failed: %v, ids %v", err, w.Budget.IDs)
	}
	if ti.Committed() != 1 || ti.RolledBack() != 1 {
		t.Fatalf("after calls: %d committed, %d rolled back", ti.Committed(), ti.RolledBack())
	}
	if _, err := db.Idempotency().Get(ctx, "tok_1/binance", "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failed write's claim is stored: %v", err)
	}
	var entries int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM budget_entries`).Scan(&entries); err != nil || entries != 1 {
		t.Fatalf("%d budget entries, want 1 (%v)", entries, err)
	}
	checkTotals(t, db)
}

// BenchmarkLedgerOpen: one order's ledger write (a reservation against a
// daily budget shared by every order, a fresh key, an intent record), 64
// writers at once on one pool of 64 connections. Writes against one
// budget are serialised through their commits (each waits for the one
// before to be durable), so this measures about one WAL flush per order.
func BenchmarkLedgerOpen(b *testing.B) { benchLedgerOpen(b, false) }

// BenchmarkLedgerOpenOwnBudgets: the same with a budget per writer (64
// tokens' orders): the commits overlap and the server flushes them
// together.
func BenchmarkLedgerOpenOwnBudgets(b *testing.B) { benchLedgerOpen(b, true) }

func benchLedgerOpen(b *testing.B, own bool) {
	ctx := context.Background()
	dsn := testDSN(b)
	db, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Migrate: true, MaxConns: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if _, err := postgres.UseTestIntents(ctx, db); err != nil {
		b.Fatal(err)
	}
	lg := db.Ledger()
	var n, writers atomic.Int64
	b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		writer := writers.Add(1)
		for pb.Next() {
			w := storetest.LedgerWrite(int(n.Add(1)), "1000000000000")
			if own {
				w.Budget.Claims[0].Key += fmt.Sprint("/writer", writer)
			}
			if err := lg.Open(ctx, w); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestBudgetChurnAcrossReplicas: 3 replicas reserve against two shared
// budgets (claims in either order), release every other reservation and
// prune at a moving cut, all at once: no call fails (no deadlock), the
// totals match the entries, and the windows hold exactly what is left.
func TestBudgetChurnAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicas(t, 3)
	t0 := time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)
	a := policy.Claim{Key: "token:a/daily/USDT", Since: time.Time{}, Limit: dec("1e12")}
	b := policy.Claim{Key: "account:x/daily/USDT", Since: time.Time{}, Limit: dec("1e12")}
	var kept sync.Map // id of a kept entry → amount
	var wg sync.WaitGroup
	for r, db := range dbs {
		for g := range 6 {
			wg.Go(func() {
				for i := range 30 {
					at := t0.Add(time.Duration(r*1000+g*100+i) * 37 * time.Second)
					claims, onA := []policy.Claim{a, b}, 0
					if (g+i)%2 == 1 {
						claims, onA = []policy.Claim{b, a}, 1
					}
					amt := decimal.New(int64(i+1), -2)
					ids, err := db.Budgets().Reserve(ctx, at, amt, claims)
					if err != nil {
						t.Errorf("reserve: %v", err)
						return
					}
					if i%2 == 0 {
						if err := db.Budgets().Release(ctx, ids); err != nil {
							t.Errorf("release: %v", err)
							return
						}
						continue
					}
					kept.Store(ids[onA], amt)
					kept.Store(ids[1-onA], amt)
				}
			})
		}
	}
	wg.Go(func() {
		for i := range 10 {
			c := t0.Add(time.Duration(i) * 2 * time.Hour)
			if err := dbs[i%3].Budgets().Prune(ctx, c); err != nil {
				t.Errorf("prune: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	checkTotals(t, dbs[0])
	// Each window holds exactly the kept entries left on its key (a
	// prune runs key by key, so a reservation dated before a cut may
	// have come between the two keys' prunes: they may differ).
	for i, c := range []policy.Claim{a, b} {
		rows, err := dbs[0].Pool().Query(ctx, `SELECT id FROM budget_entries WHERE key = $1`, c.Key)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			t.Fatalf("%s: nothing left to compare", c.Key)
		}
		want := decimal.Zero
		for _, id := range ids {
			v, ok := kept.Load(id)
			if !ok {
				t.Fatalf("entry %d is left although it was released", id)
			}
			want = want.Add(v.(decimal.Decimal))
		}
		var ex *policy.ExceededError
		err = dbs[1+i].Budgets().Check(ctx, time.Now(), decimal.Zero, []policy.Claim{{Key: c.Key, Limit: dec("-1")}})
		if !errors.As(err, &ex) || !ex.Used.Equal(want) {
			t.Fatalf("window of %s: %v, entries left sum to %s", c.Key, err, want)
		}
	}
}
