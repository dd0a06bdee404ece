package okx

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// ClientOrderIDField is the order placement's client order id member.
const ClientOrderIDField = "clOrdId"

// codeNoSuchOrder is OKX's "Order does not exist" code.
const codeNoSuchOrder = "51603"

// NewClientOrderID implements venue.ClientOrderIDs: 32 hex digits (clOrdId
// takes up to 32 letters and digits).
func (v *Venue) NewClientOrderID(seed [16]byte) string { return venue.HexID(seed) }

// SetClientOrderID implements venue.ClientOrderIDs for POST
// /api/v5/trade/order: the clOrdId member of the JSON body is set to id, or
// one is appended (a body with it twice, or in another letter case, is
// refused).
func (v *Venue) SetClientOrderID(r *venue.Request, id string) error {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return fmt.Errorf("okx: %w", venue.ErrNoClientOrderID)
	}
	// A body with the field twice, or in another letter case, is one
	// Normalize refuses: it is not rewritten either.
	if _, err := venue.JSONFields(r.Body, ClientOrderIDField); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
	b, err := venue.SetJSONMember(r.Body, ClientOrderIDField, id, func(k string) bool { return k == ClientOrderIDField })
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedOrder, err)
	}
	r.Body = b
	return nil
}

// LookupRequests implements venue.OrderLookup: GET /api/v5/trade/order
// with instId and clOrdId (open and recent closed orders).
func (v *Venue) LookupRequests(_ *venue.Request, o *venue.Order, clientOrderID string) ([]*venue.Request, error) {
	if o == nil || o.Instrument == "" || clientOrderID == "" {
		return nil, fmt.Errorf("okx: lookup needs instId and client order id")
	}
	return []*venue.Request{{
		Method:   http.MethodGet,
		Path:     "/api/v5/trade/order",
		RawQuery: "instId=" + url.QueryEscape(o.Instrument) + "&clOrdId=" + url.QueryEscape(clientOrderID),
		Header:   http.Header{},
	}}, nil
}

// okxAnswer is the part of an answer keystile reads.
type okxAnswer struct {
	Code string `json:"code"`
	Data []struct {
		OrdID   string `json:"ordId"`
		ClOrdID string `json:"clOrdId"`
		SCode   string `json:"sCode"`
	} `json:"data"`
}

// Found implements venue.OrderLookup: code "0" with the order, or code
// 51603 ("Order does not exist").
func (v *Venue) Found(clientOrderID string, status int, body []byte) (string, bool, error) {
	var a okxAnswer
	if json.Unmarshal(body, &a) != nil {
		return "", false, fmt.Errorf("okx: lookup answer %d: %w", status, venue.ErrLookupUndecided)
	}
	switch {
	case status == http.StatusOK && a.Code == "0":
		for _, d := range a.Data {
			if d.ClOrdID == clientOrderID && d.OrdID != "" {
				return d.OrdID, true, nil
			}
		}
	case a.Code == codeNoSuchOrder && status < 500:
		return "", false, nil
	}
	return "", false, fmt.Errorf("okx: lookup answer %d: %w", status, venue.ErrLookupUndecided)
}

// VenueOrderID implements venue.OrderIDReader: ordId of an accepted
// placement (code and sCode "0").
func (v *Venue) VenueOrderID(status int, body []byte) string {
	var a okxAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.Code != "0" || len(a.Data) == 0 || a.Data[0].SCode != "0" {
		return ""
	}
	return a.Data[0].OrdID
}

var (
	_ venue.ClientOrderIDs = (*Venue)(nil)
	_ venue.OrderLookup    = (*Venue)(nil)
	_ venue.OrderIDReader  = (*Venue)(nil)
)
