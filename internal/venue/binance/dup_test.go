package binance_test

import (
	"errors"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
)

// TestParseOrderDuplicates: an order naming a parameter twice is a
// venue.ErrDuplicateParam, which the gateway refuses whatever the policy.
func TestParseOrderDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{"query twice", func() error {
			_, err := binance.ParseOrder("symbol=BTCUSDT&symbol=ETHUSDT&side=BUY&type=LIMIT&quantity=1&price=1", nil)
			return err
		}},
		{"body twice", func() error {
			_, err := binance.ParseOrder("", []byte("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&quantity=100"))
			return err
		}},
		{"query and body", func() error {
			_, err := binance.ParseOrder("symbol=BTCUSDT&side=BUY&type=LIMIT&price=1", []byte("price=2&quantity=1"))
			return err
		}},
		{"letter case", func() error {
			_, err := binance.ParseOrder("symbol=BTCUSDT&side=BUY&SIDE=SELL&type=LIMIT&quantity=1&price=1", nil)
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
