package postgres_test

import (
	"testing"

	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

func TestContractVault(t *testing.T) {
	storetest.Vault(t, func(t *testing.T) vault.Store { return openTest(t).Vault() })
}

func TestContractTokens(t *testing.T) {
	storetest.Tokens(t, func(t *testing.T) token.Store { return openTest(t).Tokens() })
}
