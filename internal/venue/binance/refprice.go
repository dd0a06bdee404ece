package binance

import "github.com/keystile/keystile/internal/venue"

// ticker is the public GET /api/v3/ticker/price?symbol=<instrument>:
// {"symbol":..., "price":...}.
func ticker() venue.Ticker {
	return venue.Ticker{Venue: "binance", Path: "/api/v3/ticker/price", Param: "symbol", Symbol: "symbol", Price: []any{"price"}, Numbers: true}
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
