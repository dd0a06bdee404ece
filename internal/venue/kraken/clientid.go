package kraken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// ClientOrderIDParam is AddOrder's client order id parameter.
const ClientOrderIDParam = "cl_ord_id"

// clientID is cl_ord_id: a UUID (it takes a UUID or up to 18 characters
// of free text); Kraken reads the form body before the query.
func clientID() venue.ClientID {
	return venue.ClientID{Field: ClientOrderIDParam, UUID: true, Place: venue.InFormBodyFirst}
}

// SetClientOrderID implements venue.ClientOrderIDs for AddOrder: cl_ord_id
// is replaced where the bot put it (the form body wins, as in ParseOrder),
// else added to the body. Kraken refuses cl_ord_id together with userref,
// so an order carrying userref is refused here too.
func (v *Venue) SetClientOrderID(r *venue.Request, id string) error {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace || !strings.HasSuffix(strings.TrimRight(r.Path, "/"), "/AddOrder") {
		return fmt.Errorf("kraken: %w", venue.ErrNoClientOrderID)
	}
	if t := bytes.TrimSpace(r.Body); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return ErrBody
	}
	if venue.HasFormParam(r.RawQuery, "userref") || venue.HasFormParam(string(r.Body), "userref") {
		return fmt.Errorf("kraken: %w (userref excludes cl_ord_id)", venue.ErrNoClientOrderID)
	}
	return v.ClientID.Set(r, id)
}

// LookupRequests implements venue.OrderLookup: OpenOrders, then
// ClosedOrders, each restricted to cl_ord_id (QueryOrders takes only
// Kraken's txid). The nonce is added when the requests are signed.
func (v *Venue) LookupRequests(_ *venue.Request, _ *venue.Order, clientOrderID string) ([]*venue.Request, error) {
	if clientOrderID == "" {
		return nil, fmt.Errorf("kraken: lookup needs a client order id")
	}
	body := []byte(ClientOrderIDParam + "=" + url.QueryEscape(clientOrderID))
	h := func() http.Header { return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}} }
	return []*venue.Request{
		{Method: http.MethodPost, Path: "/0/private/OpenOrders", Header: h(), Body: body},
		{Method: http.MethodPost, Path: "/0/private/ClosedOrders", Header: h(), Body: body},
	}, nil
}

// krakenAnswer is the part of an answer keystile reads.
type krakenAnswer struct {
	Error  []string `json:"error"`
	Result struct {
		Open map[string]struct {
			ClOrdID string `json:"cl_ord_id"`
		} `json:"open"`
		Closed map[string]struct {
			ClOrdID string `json:"cl_ord_id"`
		} `json:"closed"`
		Count *int     `json:"count"`
		TxID  []string `json:"txid"`
	} `json:"result"`
}

// Found implements venue.OrderLookup for OpenOrders ("open": {txid: order})
// and ClosedOrders ("closed": {...}, "count": n) answers: found when an
// order carries clientOrderID; not found when none does and the answer is
// complete (ClosedOrders: count no larger than the orders listed).
func (v *Venue) Found(clientOrderID string, status int, body []byte) (string, bool, error) {
	var a krakenAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || len(a.Error) > 0 {
		return "", false, fmt.Errorf("kraken: lookup answer %d: %w", status, venue.ErrLookupUndecided)
	}
	switch {
	case a.Result.Open != nil:
		for id, o := range a.Result.Open {
			if o.ClOrdID == clientOrderID {
				return id, true, nil
			}
		}
		return "", false, nil
	case a.Result.Closed != nil:
		for id, o := range a.Result.Closed {
			if o.ClOrdID == clientOrderID {
				return id, true, nil
			}
		}
		if a.Result.Count != nil && *a.Result.Count <= len(a.Result.Closed) {
			return "", false, nil
		}
	}
	return "", false, fmt.Errorf("kraken: lookup answer: %w", venue.ErrLookupUndecided)
}

// VenueOrderID implements venue.OrderIDReader: the first txid of an
// AddOrder answer without errors.
func (v *Venue) VenueOrderID(status int, body []byte) string {
	var a krakenAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || len(a.Error) > 0 || len(a.Result.TxID) == 0 {
		return ""
	}
	return a.Result.TxID[0]
}

var (
	_ venue.ClientOrderIDs = (*Venue)(nil)
	_ venue.OrderLookup    = (*Venue)(nil)
	_ venue.OrderIDReader  = (*Venue)(nil)
)
