package bybit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// ClientOrderIDField is the order placement's client order id member.
const ClientOrderIDField = "orderLinkId"

// clientID is orderLinkId: 32 hex digits (it takes up to 36 of
// [A-Za-z0-9_-]), a member of the JSON body.
func clientID() venue.ClientID { return venue.ClientID{Field: ClientOrderIDField, Place: venue.InJSON} }

// SetClientOrderID implements venue.ClientOrderIDs for POST
// /v5/order/create: the orderLinkId member of the JSON body is set to id,
// or one is appended (a body with it twice, or in another letter case, is
// refused).
func (v *Venue) SetClientOrderID(r *venue.Request, id string) error {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return fmt.Errorf("bybit: %w", venue.ErrNoClientOrderID)
	}
	if err := v.ClientID.Set(r, id); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
	return nil
}

// LookupRequests implements venue.OrderLookup: GET /v5/order/realtime
// (open orders), the same with openOnly=1 (the recent closed ones), then
// GET /v5/order/history (older ones; it lags behind), each with category,
// symbol and orderLinkId. The category comes from the original body
// (default spot).
func (v *Venue) LookupRequests(r *venue.Request, o *venue.Order, clientOrderID string) ([]*venue.Request, error) {
	if o == nil || o.Instrument == "" || clientOrderID == "" {
		return nil, fmt.Errorf("bybit: lookup needs symbol and client order id")
	}
	category := "spot"
	if r != nil {
		if f, err := venue.JSONFields(r.Body, "category"); err == nil && f[0] != "" {
			category = f[0]
		}
	}
	q := "category=" + url.QueryEscape(category) + "&symbol=" + url.QueryEscape(o.Instrument) +
		"&orderLinkId=" + url.QueryEscape(clientOrderID)
	return []*venue.Request{
		{Method: http.MethodGet, Path: "/v5/order/realtime", RawQuery: q, Header: http.Header{}},
		{Method: http.MethodGet, Path: "/v5/order/realtime", RawQuery: q + "&openOnly=1", Header: http.Header{}},
		{Method: http.MethodGet, Path: "/v5/order/history", RawQuery: q, Header: http.Header{}},
	}, nil
}

// bybitAnswer is the part of an answer keystile reads.
type bybitAnswer struct {
	RetCode *int `json:"retCode"`
	Result  struct {
		OrderID        string `json:"orderId"`
		NextPageCursor string `json:"nextPageCursor"`
		List           []struct {
			OrderID     string `json:"orderId"`
			OrderLinkID string `json:"orderLinkId"`
		} `json:"list"`
	} `json:"result"`
}

// Found implements venue.OrderLookup: retCode 0 and a list holding the
// order; a list without it (and no next page) means not found.
func (v *Venue) Found(clientOrderID string, status int, body []byte) (string, bool, error) {
	var a bybitAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.RetCode == nil || *a.RetCode != 0 || a.Result.List == nil {
		return "", false, fmt.Errorf("bybit: lookup answer %d: %w", status, venue.ErrLookupUndecided)
	}
	for _, o := range a.Result.List {
		if o.OrderLinkID == clientOrderID && o.OrderID != "" {
			return o.OrderID, true, nil
		}
	}
	if a.Result.NextPageCursor != "" && len(a.Result.List) > 0 {
		return "", false, fmt.Errorf("bybit: lookup answer has more pages: %w", venue.ErrLookupUndecided)
	}
	return "", false, nil
}

// VenueOrderID implements venue.OrderIDReader: result.orderId of an
// answer with retCode 0.
func (v *Venue) VenueOrderID(status int, body []byte) string {
	var a bybitAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.RetCode == nil || *a.RetCode != 0 {
		return ""
	}
	return a.Result.OrderID
}

var (
	_ venue.ClientOrderIDs = (*Venue)(nil)
	_ venue.OrderLookup    = (*Venue)(nil)
	_ venue.OrderIDReader  = (*Venue)(nil)
)
