package app

import (
	"testing"

	"github.com/keystile/keystile/internal/config"
)

// Every venue type declares the credential fields it reads, so that secret
// set can check them.
func TestCredentialFieldsEveryType(t *testing.T) {
	for _, typ := range []string{config.TypeStake, config.TypeDMarket, config.TypeBetfair, config.TypeSTAPI, config.TypeGeneric,
		config.TypeBinance, config.TypeKraken, config.TypeOKX, config.TypeBybit, config.TypeCoinbase} {
		vc := config.Venue{Type: typ}
		if typ == config.TypeGeneric {
			vc.Auth = &config.Auth{Scheme: config.SchemeHMAC, KeyField: "api_key", SecretField: "secret"}
		}
		if s := CredentialFields(vc); len(s.Required) == 0 {
			t.Errorf("type %s declares no required credential field", typ)
		}
	}
}
