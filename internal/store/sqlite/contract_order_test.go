package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/store/storetest"
)

// openContract opens a fresh database, closed when the test ends.
func openOrderContract(t *testing.T) (*sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func TestBudgetContract(t *testing.T) {
	storetest.Budgets(t, func(t *testing.T) policy.BudgetStore {
		db, _ := openOrderContract(t)
		t.Cleanup(func() { checkTotals(t, db) })
		return db.Budgets()
	})
}

func TestIdempotencyContract(t *testing.T) {
	storetest.Idempotency(t, func(t *testing.T) idem.Store {
		db, _ := openOrderContract(t)
		return db.Idempotency()
	})
}

func TestLedgerContract(t *testing.T) {
	storetest.Ledger(t, func(t *testing.T) storetest.LedgerStores {
		ctx := context.Background()
		noLog, path := openOrderContract(t)
		db, log := openLedger(t, path)
		t.Cleanup(func() {
			if err := log.Close(ctx); err != nil {
				t.Error(err)
			}
			checkTotals(t, db)
			_ = db.Close()
		})
		return storetest.LedgerStores{Ledger: db.Ledger(), Budgets: db.Budgets(), Idem: db.Idempotency(),
			Intents: func(t *testing.T) map[string]bool { return intents(t, path) }, NoLog: noLog.Ledger()}
	})
}
