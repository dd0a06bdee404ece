package kraken

import "github.com/keystile/keystile/internal/venue"

// ticker is the public GET /0/public/Ticker?pair=<instrument>: the last
// trade price c[0] of {"error":[],"result":{"<pair>":{"c":[price,
// volume],...}}}. Kraken answers under its own pair name (XXBTZUSD for
// XBTUSD), so a single entry is taken whatever its key; with several, the
// one named instrument.
func ticker() venue.Ticker {
	return venue.Ticker{Venue: "kraken", Path: "/0/public/Ticker", Param: "pair", Errors: []any{"error"},
		Entries: []any{"result"}, Keyed: true, Price: []any{"c", 0}}
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
