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

// clientID is clOrdId: 32 hex digits (it takes up to 32 letters and
// digits), a member of the JSON body.
func clientID() venue.ClientID { return venue.ClientID{Field: ClientOrderIDField, Place: venue.InJSON} }

// SetClientOrderID implements venue.ClientOrderIDs for POST
// /api/v5/trade/order: the clOrdId member of the JSON body is set to id, or
// one is appended (a body with it twice, or in another letter case, is
// refused); for a batch-orders body of one order, the same in that order.
func (v *Venue) SetClientOrderID(r *venue.Request, id string) error {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return fmt.Errorf("okx: %w", venue.ErrNoClientOrderID)
	}
	if isBatch(r.Path) {
		elem, at, err := batchOrder(r.Body)
		if err != nil {
			return err
		}
		one := &venue.Request{Body: elem}
		if err := v.ClientID.Set(one, id); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformedOrder, err)
		}
		b, err := venue.ReplaceJSONElement(r.Body, at, elem, one.Body)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformedOrder, err)
		}
		r.Body = b
		return nil
	}
	if err := v.ClientID.Set(r, id); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
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
