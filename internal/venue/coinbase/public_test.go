package coinbase_test

import (
	"testing"

	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func TestPublicReadsUnsigned(t *testing.T) {
	v, err := coinbase.New(coinbase.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	sdk := map[string]string{"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}
	for _, tc := range []struct{ name, public, private string }{
		{"market products", "https://api.coinbase.com/api/v3/brokerage/market/products", "https://api.coinbase.com/api/v3/brokerage/products"},
		{"server time", "https://api.coinbase.com/api/v3/brokerage/time", "https://api.coinbase.com/api/v3/brokerage/accounts"},
	} {
		t.Run(tc.name, func(t *testing.T) { venuetest.PublicUnsigned(t, v, tc.public, tc.private, sdk) })
	}
}
