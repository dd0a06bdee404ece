package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// openContract opens a fresh database file for one contract test.
func openContract(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestContractVault(t *testing.T) {
	storetest.Vault(t, func(t *testing.T) vault.Store { return openContract(t).Vault() })
}

func TestContractTokens(t *testing.T) {
	storetest.Tokens(t, func(t *testing.T) token.Store { return openContract(t).Tokens() })
}
