package binance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/keystile/keystile/internal/venue"
)

// codeUnknownOrder is Binance's "Unknown order sent." (-2011): what
// DELETE /api/v3/openOrders answers when the symbol has no open order left.
const codeUnknownOrder = -2011

// openOrder is the part of an open-order record keystile reads.
type openOrder struct {
	Symbol  string      `json:"symbol"`
	OrderID json.Number `json:"orderId"`
}

// cancelled is one element of DELETE /api/v3/openOrders' answer: a
// cancelled order, or an order list with its orders' reports.
type cancelled struct {
	OrderID      json.Number `json:"orderId"`
	Status       string      `json:"status"`
	OrderListID  json.Number `json:"orderListId"`
	OrderReports []cancelled `json:"orderReports"`
}

// apiError is Binance's error document.
type apiError struct {
	Code json.Number `json:"code"`
	Msg  string      `json:"msg"`
}

// CancelAll implements venue.CancelAller: GET /api/v3/openOrders (every
// symbol; weight 80) names the symbols with open orders, DELETE
// /api/v3/openOrders?symbol=S cancels each symbol's orders (order lists
// included), and a second GET lists what is left.
func (v *Venue) CancelAll(ctx context.Context, send venue.Sender) (venue.CancelResult, error) {
	var res venue.CancelResult
	open, err := v.listOpen(ctx, send, &res)
	if err != nil {
		return res, err
	}
	bySymbol := map[string][]string{}
	for _, o := range open {
		bySymbol[o.Symbol] = append(bySymbol[o.Symbol], o.OrderID.String())
	}
	symbols := make([]string, 0, len(bySymbol))
	for s := range bySymbol {
		symbols = append(symbols, s)
	}
	slices.Sort(symbols)
	for _, sym := range symbols {
		res.Requests++
		status, body, err := send(ctx, &venue.Request{Method: http.MethodDelete, Path: "/api/v3/openOrders",
			RawQuery: "symbol=" + url.QueryEscape(sym), Header: http.Header{}})
		if err != nil {
			for _, id := range bySymbol[sym] {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: "cancel request failed: " + err.Error()})
			}
			continue
		}
		if status != http.StatusOK {
			var e apiError
			if json.Unmarshal(body, &e) == nil && e.Code.String() == fmt.Sprint(codeUnknownOrder) {
				continue // filled or cancelled meanwhile: nothing left on the symbol
			}
			for _, id := range bySymbol[sym] {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: fmt.Sprintf("binance %d: code %s: %s", status, e.Code, e.Msg)})
			}
			continue
		}
		var items []cancelled
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&items); err != nil {
			return res, fmt.Errorf("binance: cancel %s: %w: %v", sym, venue.ErrCancelAnswer, err)
		}
		for _, it := range items {
			if it.OrderListID.String() != "" && it.OrderListID.String() != "-1" && len(it.OrderReports) > 0 {
				for _, r := range it.OrderReports {
					if r.Status == "CANCELED" {
						res.AddCancelled(r.OrderID.String())
					}
				}
				continue
			}
			if it.Status == "CANCELED" {
				res.AddCancelled(it.OrderID.String())
			}
		}
	}
	left, err := v.listOpen(ctx, send, &res)
	if err != nil {
		return res, err
	}
	ids := make([]string, 0, len(left))
	for _, o := range left {
		ids = append(ids, o.OrderID.String())
	}
	res.StillOpen(ids)
	return res, nil
}

// listOpen reads every open order of the account.
func (v *Venue) listOpen(ctx context.Context, send venue.Sender, res *venue.CancelResult) ([]openOrder, error) {
	res.Requests++
	status, body, err := send(ctx, &venue.Request{Method: http.MethodGet, Path: "/api/v3/openOrders", Header: http.Header{}})
	if err != nil {
		return nil, fmt.Errorf("binance: list open orders: %w", err)
	}
	if status != http.StatusOK {
		var e apiError
		_ = json.Unmarshal(body, &e)
		return nil, fmt.Errorf("binance: list open orders: %w: status %d, code %s: %s", venue.ErrCancelAnswer, status, e.Code, e.Msg)
	}
	var open []openOrder
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&open); err != nil {
		return nil, fmt.Errorf("binance: list open orders: %w: %v", venue.ErrCancelAnswer, err)
	}
	for _, o := range open {
		if o.Symbol == "" || o.OrderID.String() == "" {
			return nil, fmt.Errorf("binance: list open orders: %w: an order without symbol or orderId", venue.ErrCancelAnswer)
		}
	}
	return open, nil
}

var _ venue.CancelAller = (*Venue)(nil)
