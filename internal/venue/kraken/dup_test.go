package kraken_test

import (
	"errors"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
)

// TestParseOrderDuplicates: an order naming a parameter twice is a
// venue.ErrDuplicateParam, which the gateway refuses whatever the policy.
func TestParseOrderDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{"body twice", func() error {
			_, err := kraken.ParseOrder("", []byte("pair=XBTUSD&type=buy&ordertype=limit&volume=1&volume=100&price=1"))
			return err
		}},
		{"query and body", func() error {
			_, err := kraken.ParseOrder("pair=ETHUSD", []byte("pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=1"))
			return err
		}},
		{"encoded key", func() error {
			_, err := kraken.ParseOrder("", []byte("pair=XBTUSD&type=buy&%74ype=sell&ordertype=limit&volume=1&price=1"))
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
