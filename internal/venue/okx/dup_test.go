package okx_test

import (
	"errors"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/okx"
)

// TestParseOrderDuplicates: an order naming a parameter twice is a
// venue.ErrDuplicateParam, which the gateway refuses whatever the policy.
func TestParseOrderDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{"key twice", func() error {
			_, err := okx.ParseOrder([]byte(`{"instId":"BTC-USDT","side":"buy","ordType":"limit","sz":"1","sz":"100","px":"1"}`))
			return err
		}},
		{"escaped key", func() error {
			_, err := okx.ParseOrder([]byte(`{"instId":"BTC-USDT","side":"buy","ordType":"limit","sz":"1","\u0073z":"100","px":"1"}`))
			return err
		}},
		{"letter case", func() error {
			_, err := okx.ParseOrder([]byte(`{"instId":"BTC-USDT","INSTID":"ETH-USDT","side":"buy","ordType":"limit","sz":"1","px":"1"}`))
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
