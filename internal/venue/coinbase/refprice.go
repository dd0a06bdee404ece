package coinbase

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// TickerRequest implements venue.PriceReference: the public, unsigned
// GET /api/v3/brokerage/market/products/<product_id> (Get Public Product).
// A product id is letters, digits and dashes; anything else is escaped,
// so it can name no other path (and finds no product).
func (v *Venue) TickerRequest(instrument string) (method, path, rawQuery string) {
	return "GET", "/api/v3/brokerage/market/products/" + url.PathEscape(strings.ToUpper(instrument)), ""
}

// ParseTicker implements venue.PriceReference: {"product_id":...,
// "price":...}, the product's last trade price.
func (v *Venue) ParseTicker(instrument string, body []byte) (string, error) {
	var a struct {
		ProductID string `json:"product_id"`
		Price     string `json:"price"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("coinbase: product: %w", venue.ErrNotJSONObject)
	}
	if a.ProductID != "" && !strings.EqualFold(a.ProductID, instrument) {
		return "", fmt.Errorf("coinbase: product: answer is for %q, not %q", a.ProductID, instrument)
	}
	if a.Price == "" {
		return "", errors.New("coinbase: product: no price")
	}
	return a.Price, nil
}

var _ venue.PriceReference = (*Venue)(nil)
