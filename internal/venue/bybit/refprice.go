package bybit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// TickerRequest implements venue.PriceReference: the public
// GET /v5/market/tickers?category=spot&symbol=<instrument>. The spot last
// price is the reference for every category (a linear contract tracks it).
func (v *Venue) TickerRequest(instrument string) (method, path, rawQuery string) {
	return "GET", "/v5/market/tickers", "category=spot&symbol=" + url.QueryEscape(strings.ToUpper(instrument))
}

// ParseTicker implements venue.PriceReference:
// {"retCode":0,"result":{"list":[{"symbol":...,"lastPrice":...}]}}.
func (v *Venue) ParseTicker(instrument string, body []byte) (string, error) {
	var a struct {
		RetCode *json.Number `json:"retCode"`
		Result  struct {
			List []struct {
				Symbol    string `json:"symbol"`
				LastPrice string `json:"lastPrice"`
			} `json:"list"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("bybit: ticker: %w", venue.ErrNotJSONObject)
	}
	if a.RetCode == nil || a.RetCode.String() != "0" {
		return "", errors.New("bybit: ticker: retCode is not 0")
	}
	if len(a.Result.List) != 1 {
		return "", fmt.Errorf("bybit: ticker: %d entries, want 1", len(a.Result.List))
	}
	d := a.Result.List[0]
	if d.Symbol != "" && !strings.EqualFold(d.Symbol, instrument) {
		return "", fmt.Errorf("bybit: ticker: answer is for %q, not %q", d.Symbol, instrument)
	}
	if d.LastPrice == "" {
		return "", errors.New("bybit: ticker: no last price")
	}
	return d.LastPrice, nil
}

var _ venue.PriceReference = (*Venue)(nil)
