package okx

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// TickerRequest implements venue.PriceReference: the public
// GET /api/v5/market/ticker?instId=<instrument>.
func (v *Venue) TickerRequest(instrument string) (method, path, rawQuery string) {
	return "GET", "/api/v5/market/ticker", "instId=" + url.QueryEscape(strings.ToUpper(instrument))
}

// ParseTicker implements venue.PriceReference:
// {"code":"0","data":[{"instId":...,"last":...}]}.
func (v *Venue) ParseTicker(instrument string, body []byte) (string, error) {
	var a struct {
		Code string `json:"code"`
		Data []struct {
			InstID string `json:"instId"`
			Last   string `json:"last"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("okx: ticker: %w", venue.ErrNotJSONObject)
	}
	if a.Code != "0" {
		return "", fmt.Errorf("okx: ticker: code %q", a.Code)
	}
	if len(a.Data) != 1 {
		return "", fmt.Errorf("okx: ticker: %d entries, want 1", len(a.Data))
	}
	d := a.Data[0]
	if d.InstID != "" && !strings.EqualFold(d.InstID, instrument) {
		return "", fmt.Errorf("okx: ticker: answer is for %q, not %q", d.InstID, instrument)
	}
	if d.Last == "" {
		return "", errors.New("okx: ticker: no last price")
	}
	return d.Last, nil
}

var _ venue.PriceReference = (*Venue)(nil)
