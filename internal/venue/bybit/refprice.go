package bybit

import "github.com/keystile/keystile/internal/venue"

// ticker is the public GET /v5/market/tickers?category=spot&symbol=<instrument>:
// {"retCode":0,"result":{"list":[{"symbol":...,"lastPrice":...}]}}. The
// spot last price is the reference for every category (a linear contract
// tracks it).
func ticker() venue.Ticker {
	return venue.Ticker{Venue: "bybit", Path: "/v5/market/tickers", Query: "category=spot&", Param: "symbol",
		Status: []any{"retCode"}, StatusOK: "0", Entries: []any{"result", "list"}, Symbol: "symbol", Price: []any{"lastPrice"}}
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
