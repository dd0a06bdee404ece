package postgres_test

import (
	"testing"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
	"github.com/keystile/keystile/internal/venue/kraken"
)

func TestContractVault(t *testing.T) {
	storetest.Vault(t, func(t *testing.T) vault.Store { return openTest(t).Vault() })
}

func TestContractTokens(t *testing.T) {
	storetest.Tokens(t, func(t *testing.T) token.Store { return openTest(t).Tokens() })
}

func TestContractNonces(t *testing.T) {
	storetest.Nonces(t, func(t *testing.T) kraken.NonceStore { return openTest(t).Nonces() })
}

func TestContractTrips(t *testing.T) {
	storetest.Trips(t, func(t *testing.T) killswitch.Store { return openTest(t).Trips() })
}

func TestContractLossLedger(t *testing.T) {
	storetest.LossLedger(t, func(t *testing.T) killswitch.Ledger { return openTest(t).LossLedger() })
}

func TestContractMFA(t *testing.T) {
	storetest.MFA(t, func(t *testing.T) mfa.Store { return openTest(t).MFA() })
}

func TestContractAlertDigests(t *testing.T) {
	storetest.AlertDigests(t, func(t *testing.T) alert.DigestStore { return openTest(t).Alerts() })
}

func TestContractDetect(t *testing.T) {
	storetest.Detect(t, func(t *testing.T) *postgres.DetectStore { return openTest(t).Detect() })
}
