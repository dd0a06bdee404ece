package okx

import "github.com/keystile/keystile/internal/venue"

// ticker is the public GET /api/v5/market/ticker?instId=<instrument>:
// {"code":"0","data":[{"instId":...,"last":...}]}.
func ticker() venue.Ticker {
	return venue.Ticker{Venue: "okx", Path: "/api/v5/market/ticker", Param: "instId", Status: []any{"code"}, StatusOK: "0",
		Entries: []any{"data"}, Symbol: "instId", Price: []any{"last"}}
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
