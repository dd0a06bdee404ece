package postgres_test

import (
	"context"
	"testing"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
)

func TestBudgetContract(t *testing.T) {
	storetest.Budgets(t, func(t *testing.T) policy.BudgetStore {
		db := openTest(t)
		t.Cleanup(func() { checkTotals(t, db) })
		return db.Budgets()
	})
}

func TestIdempotencyContract(t *testing.T) {
	storetest.Idempotency(t, func(t *testing.T) idem.Store { return openTest(t).Idempotency() })
}

func TestLedgerContract(t *testing.T) {
	storetest.Ledger(t, func(t *testing.T) storetest.LedgerStores {
		ctx := context.Background()
		dsn := testDSN(t)
		db, noLog := openDSN(t, dsn), openDSN(t, dsn)
		if _, err := postgres.UseTestIntents(ctx, db); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { checkTotals(t, db) })
		return storetest.LedgerStores{Ledger: db.Ledger(), Budgets: db.Budgets(), Idem: db.Idempotency(),
			Intents: func(t *testing.T) map[string]bool { return storedIntents(t, db) }, NoLog: noLog.Ledger()}
	})
}

func storedIntents(t testing.TB, db *postgres.DB) map[string]bool {
	t.Helper()
	got, err := postgres.StoredTestIntents(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
