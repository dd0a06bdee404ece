package coinbase

import "github.com/keystile/keystile/internal/venue"

// ticker is the public, unsigned GET
// /api/v3/brokerage/market/products/<product_id> (Get Public Product):
// {"product_id":..., "price":...}, the product's last trade price. A
// product id is letters, digits and dashes; anything else is escaped, so
// it can name no other path (and finds no product).
func ticker() venue.Ticker {
	return venue.Ticker{Venue: "coinbase", Path: "/api/v3/brokerage/market/products/", InPath: true,
		Symbol: "product_id", Price: []any{"price"}}
}

// TickerRequest implements venue.PriceReference.
func (v *Venue) TickerRequest(instrument string) (method, path, rawQuery string) {
	return ticker().Request(instrument)
}

// ParseTicker implements venue.PriceReference.
func (v *Venue) ParseTicker(instrument string, body []byte) (string, error) {
	return ticker().Parse(instrument, body)
}

var _ venue.PriceReference = (*Venue)(nil)
