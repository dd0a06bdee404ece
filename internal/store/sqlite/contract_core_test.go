package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
	"github.com/keystile/keystile/internal/venue/kraken"
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

func TestContractNonces(t *testing.T) {
	storetest.Nonces(t, func(t *testing.T) kraken.NonceStore { return openContract(t).Nonces() })
}

func TestContractTrips(t *testing.T) {
	storetest.Trips(t, func(t *testing.T) killswitch.Store { return openContract(t).Trips() })
}

func TestContractLossLedger(t *testing.T) {
	storetest.LossLedger(t, func(t *testing.T) killswitch.Ledger { return openContract(t).LossLedger() })
}

func TestContractMFA(t *testing.T) {
	storetest.MFA(t, func(t *testing.T) mfa.Store { return openContract(t).MFA() })
}

func TestContractAlertDigests(t *testing.T) {
	storetest.AlertDigests(t, func(t *testing.T) alert.DigestStore { return openContract(t).Alerts() })
}

func TestContractDetect(t *testing.T) {
	storetest.Detect(t, func(t *testing.T) *sqlite.DetectStore { return openContract(t).Detect() })
}
