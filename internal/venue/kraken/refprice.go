package kraken

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// TickerRequest implements venue.PriceReference: the public
// GET /0/public/Ticker?pair=<instrument>.
func (v *Venue) TickerRequest(instrument string) (method, path, rawQuery string) {
	return "GET", "/0/public/Ticker", "pair=" + url.QueryEscape(strings.ToUpper(instrument))
}

// ParseTicker implements venue.PriceReference: the last trade price c[0]
// of {"error":[],"result":{"<pair>":{"c":[price, volume],...}}}. Kraken
// answers under its own pair name (XXBTZUSD for XBTUSD), so a single entry
// is taken whatever its key; with several, the one named instrument.
func (v *Venue) ParseTicker(instrument string, body []byte) (string, error) {
	var a struct {
		Error  []string `json:"error"`
		Result map[string]struct {
			C []string `json:"c"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("kraken: ticker: %w", venue.ErrNotJSONObject)
	}
	if len(a.Error) > 0 {
		return "", fmt.Errorf("kraken: ticker: error %q", a.Error[0])
	}
	var c []string
	switch len(a.Result) {
	case 0:
		return "", errors.New("kraken: ticker: no result")
	case 1:
		for _, e := range a.Result {
			c = e.C
		}
	default:
		e, ok := a.Result[strings.ToUpper(instrument)]
		if !ok {
			return "", fmt.Errorf("kraken: ticker: %d pairs, none named %q", len(a.Result), instrument)
		}
		c = e.C
	}
	if len(c) == 0 || c[0] == "" {
		return "", errors.New("kraken: ticker: no last trade price")
	}
	return c[0], nil
}

var _ venue.PriceReference = (*Venue)(nil)
