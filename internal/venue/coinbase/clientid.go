package coinbase

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// ClientOrderIDField is the create-order body's client order id member.
const ClientOrderIDField = "client_order_id"

// clientID is client_order_id: a UUID, a member of the JSON body (a
// variant in another letter case is refused, as ParseOrder refuses it).
func clientID() venue.ClientID {
	return venue.ClientID{Field: ClientOrderIDField, UUID: true, Place: venue.InJSON}
}

// SetClientOrderID implements venue.ClientOrderIDs for POST
// /api/v3/brokerage/orders: the client_order_id member of the JSON body is
// set to id, or one is appended (a body with it twice, or in another
// letter case, is refused).
func (v *Venue) SetClientOrderID(r *venue.Request, id string) error {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return fmt.Errorf("coinbase: %w", venue.ErrNoClientOrderID)
	}
	if err := v.ClientID.Set(r, id); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
	return nil
}

// lookupLimit is the page size of a lookup.
const lookupLimit = 250

// LookupRequests implements venue.OrderLookup: GET
// /api/v3/brokerage/orders/historical/batch for the order's product (List
// Orders has no client order id filter), newest first. An order not on the
// page is "not found" only if the page is the last one.
func (v *Venue) LookupRequests(_ *venue.Request, o *venue.Order, clientOrderID string) ([]*venue.Request, error) {
	if o == nil || o.Instrument == "" || clientOrderID == "" {
		return nil, fmt.Errorf("coinbase: lookup needs product_id and client order id")
	}
	return []*venue.Request{{
		Method:   http.MethodGet,
		Path:     "/api/v3/brokerage/orders/historical/batch",
		RawQuery: "product_ids=" + url.QueryEscape(o.Instrument) + "&limit=" + fmt.Sprint(lookupLimit),
		Header:   http.Header{},
	}}, nil
}

// coinbaseAnswer is the part of an answer keystile reads.
type coinbaseAnswer struct {
	Orders []struct {
		OrderID       string `json:"order_id"`
		ClientOrderID string `json:"client_order_id"`
	} `json:"orders"`
	HasNext         *bool `json:"has_next"`
	Success         bool  `json:"success"`
	SuccessResponse struct {
		OrderID string `json:"order_id"`
	} `json:"success_response"`
}

// Found implements venue.OrderLookup on a List Orders page.
func (v *Venue) Found(clientOrderID string, status int, body []byte) (string, bool, error) {
	var a coinbaseAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.Orders == nil || a.HasNext == nil {
		return "", false, fmt.Errorf("coinbase: lookup answer %d: %w", status, venue.ErrLookupUndecided)
	}
	for _, o := range a.Orders {
		if o.ClientOrderID == clientOrderID && o.OrderID != "" {
			return o.OrderID, true, nil
		}
	}
	if *a.HasNext {
		return "", false, fmt.Errorf("coinbase: lookup answer has more pages: %w", venue.ErrLookupUndecided)
	}
	return "", false, nil
}

// VenueOrderID implements venue.OrderIDReader: success_response.order_id
// of a successful create.
func (v *Venue) VenueOrderID(status int, body []byte) string {
	var a coinbaseAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || !a.Success {
		return ""
	}
	return a.SuccessResponse.OrderID
}

var (
	_ venue.ClientOrderIDs = (*Venue)(nil)
	_ venue.OrderLookup    = (*Venue)(nil)
	_ venue.OrderIDReader  = (*Venue)(nil)
)
