package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
)

// TestLedgerChurnAcrossReplicas: 3 replicas open orders against two
// shared budgets (claims in either order) with keys repeated across
// replicas, release every other opened order and prune at a moving cut,
// all at once: each opened order's ids are its entries, no call fails (no deadlock between batches, releases and
// prunes) and the totals match the entries.
func TestLedgerChurnAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicas(t, 3)
	for _, db := range dbs {
		if _, err := postgres.UseTestIntents(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)
	a := policy.Claim{Key: "token:a/daily/USDT", Since: time.Time{}, Limit: dec("1e12")}
	b := policy.Claim{Key: "account:x/daily/USDT", Since: time.Time{}, Limit: dec("1e12")}
	var wg sync.WaitGroup
	for r, db := range dbs {
		for g := range 16 {
			wg.Go(func() {
				for i := range 20 {
					n := g*20 + i
					w := storetest.LedgerWrite(n, "1e12")
					w.Intent.RequestID = fmt.Sprint("r", r, ".", n)
					w.Key.Record.Owner = w.Intent.RequestID
					w.Budget.At = t0.Add(time.Duration(r*1000+n) * 37 * time.Second)
					w.Budget.Claims = []policy.Claim{a, b}
					if (g+i)%2 == 1 {
						w.Budget.Claims = []policy.Claim{b, a}
					}
					err := db.Ledger().Open(ctx, w)
					switch {
					case errors.Is(err, ledger.ErrKeyTaken):
						continue
					case err != nil:
						t.Errorf("open: %v", err)
						return
					}
					if i%2 == 0 {
						// Each id is the entry of its claim (unless a
						// prune took it meanwhile).
						for k, id := range w.Budget.IDs {
							var key string
							var at int64
							err := db.Pool().QueryRow(ctx, `SELECT key, at FROM budget_entries WHERE id = $1`, id).Scan(&key, &at)
							if errors.Is(err, pgx.ErrNoRows) {
								continue
							}
							if err != nil {
								t.Errorf("entry %d: %v", id, err)
								return
							}
							if key != w.Budget.Claims[k].Key || at != w.Budget.At.UnixNano() {
								t.Errorf("entry %d is %s@%d, want %s@%d", id, key, at, w.Budget.Claims[k].Key, w.Budget.At.UnixNano())
								return
							}
						}
						if err := db.Budgets().Release(ctx, w.Budget.IDs); err != nil {
							t.Errorf("release: %v", err)
							return
						}
					}
				}
			})
		}
	}
	wg.Go(func() {
		for i := range 10 {
			if err := dbs[i%3].Budgets().Prune(ctx, t0.Add(time.Duration(i)*2*time.Hour)); err != nil {
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
}
