package binance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// ClientOrderIDParam is the order placement's client order id parameter.
const ClientOrderIDParam = "newClientOrderId"

// codeNoSuchOrder is Binance's "Order does not exist." error code.
const codeNoSuchOrder = -2013

// clientID is newClientOrderId: 32 hex digits (it allows
// ^[.A-Z:/a-z0-9_-]{1,36}$); Binance reads the query before the body.
func clientID() venue.ClientID {
	return venue.ClientID{Field: ClientOrderIDParam, Place: venue.InFormQueryFirst}
}

// SetClientOrderID implements venue.ClientOrderIDs for the single-order
// placements (order, order/test, sor/order, sor/order/test,
// order/cancelReplace): newClientOrderId is replaced where the bot put it
// (the query wins, as in ParseOrder), else added to the form body, or to
// the query when the body is empty. Order lists (OCO, OTO, ...) name their
// orders with other fields and are refused.
func (v *Venue) SetClientOrderID(r *venue.Request, id string) error {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return fmt.Errorf("binance: %w", venue.ErrNoClientOrderID)
	}
	if kind, ok := orderKind(r.Path); !ok || kind != "" {
		return fmt.Errorf("binance: %w (order lists)", venue.ErrNoClientOrderID)
	}
	if isJSON(r.Body) {
		return ErrBody
	}
	return v.ClientID.Set(r, id)
}

// LookupRequests implements venue.OrderLookup: GET /api/v3/order with
// symbol and origClientOrderId (Binance answers open and closed orders).
func (v *Venue) LookupRequests(_ *venue.Request, o *venue.Order, clientOrderID string) ([]*venue.Request, error) {
	if o == nil || o.Instrument == "" || clientOrderID == "" {
		return nil, fmt.Errorf("binance: lookup needs symbol and client order id")
	}
	return []*venue.Request{{
		Method:   http.MethodGet,
		Path:     "/api/v3/order",
		RawQuery: "symbol=" + url.QueryEscape(o.Instrument) + "&origClientOrderId=" + url.QueryEscape(clientOrderID),
		Header:   http.Header{},
	}}, nil
}

// orderAnswer is the part of an order answer keystile reads.
type orderAnswer struct {
	OrderID       json.Number `json:"orderId"`
	ClientOrderID string      `json:"clientOrderId"`
	Code          json.Number `json:"code"`
}

func readAnswer(body []byte) (orderAnswer, bool) {
	var a orderAnswer
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return orderAnswer{}, false
	}
	return a, true
}

// Found implements venue.OrderLookup: 200 with the order, or 400 with code
// -2013 ("Order does not exist.").
func (v *Venue) Found(clientOrderID string, status int, body []byte) (string, bool, error) {
	a, ok := readAnswer(body)
	switch {
	case !ok:
		return "", false, fmt.Errorf("binance: lookup answer %d: %w", status, venue.ErrLookupUndecided)
	case status == http.StatusOK && a.OrderID != "" && a.ClientOrderID == clientOrderID:
		return a.OrderID.String(), true, nil
	case status >= 400 && status < 500 && a.Code.String() == fmt.Sprint(codeNoSuchOrder):
		return "", false, nil
	}
	return "", false, fmt.Errorf("binance: lookup answer %d: %w", status, venue.ErrLookupUndecided)
}

// VenueOrderID implements venue.OrderIDReader: orderId of a 200 answer.
func (v *Venue) VenueOrderID(status int, body []byte) string {
	if status != http.StatusOK {
		return ""
	}
	a, ok := readAnswer(body)
	if !ok {
		return ""
	}
	return a.OrderID.String()
}

var (
	_ venue.ClientOrderIDs = (*Venue)(nil)
	_ venue.OrderLookup    = (*Venue)(nil)
	_ venue.OrderIDReader  = (*Venue)(nil)
)
