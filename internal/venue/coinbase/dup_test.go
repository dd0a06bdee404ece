package coinbase_test

import (
	"errors"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/coinbase"
)

// TestParseOrderDuplicates: an order naming a parameter twice is a
// venue.ErrDuplicateParam, which the gateway refuses whatever the policy.
func TestParseOrderDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{"top-level key twice", func() error {
			_, err := coinbase.ParseOrder([]byte(`{"product_id":"BTC-USD","product_id":"ETH-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"1","limit_price":"1"}}}`))
			return err
		}},
		{"nested key twice", func() error {
			_, err := coinbase.ParseOrder([]byte(`{"product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"1","base_size":"100","limit_price":"1"}}}`))
			return err
		}},
		{"letter case", func() error {
			_, err := coinbase.ParseOrder([]byte(`{"product_id":"BTC-USD","PRODUCT_ID":"ETH-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"1","limit_price":"1"}}}`))
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
