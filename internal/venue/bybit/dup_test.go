package bybit_test

import (
	"errors"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/bybit"
)

// TestParseOrderDuplicates: an order naming a parameter twice is a
// venue.ErrDuplicateParam, which the gateway refuses whatever the policy.
func TestParseOrderDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{"key twice", func() error {
			_, err := bybit.ParseOrder([]byte(`{"category":"spot","symbol":"BTCUSDT","symbol":"ETHUSDT","side":"Buy","orderType":"Limit","qty":"1","price":"1"}`))
			return err
		}},
		{"letter case", func() error {
			_, err := bybit.ParseOrder([]byte(`{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1","Qty":"100","price":"1"}`))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.parse(); !errors.Is(err, venue.ErrDuplicateParam) {
				t.Fatalf("err %v, want venue.ErrDuplicateParam", err)
			}
		})
	}
}
