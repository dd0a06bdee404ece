package binance

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// TickerRequest implements venue.PriceReference: the public
// GET /api/v3/ticker/price?symbol=<instrument>.
func (v *Venue) TickerRequest(instrument string) (method, path, rawQuery string) {
	return "GET", "/api/v3/ticker/price", "symbol=" + url.QueryEscape(strings.ToUpper(instrument))
}

// ParseTicker implements venue.PriceReference: {"symbol":..., "price":...}.
func (v *Venue) ParseTicker(instrument string, body []byte) (string, error) {
	f, err := venue.JSONFields(body, "symbol", "price")
	if err != nil {
		return "", fmt.Errorf("binance: ticker: %w", err)
	}
	if f[0] != "" && !strings.EqualFold(f[0], instrument) {
		return "", fmt.Errorf("binance: ticker: answer is for %q, not %q", f[0], instrument)
	}
	if f[1] == "" {
		return "", errors.New("binance: ticker: no price")
	}
	return f[1], nil
}

var _ venue.PriceReference = (*Venue)(nil)
