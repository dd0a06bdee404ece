package bybit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// Listing limits: /v5/order/realtime pages hold at most 50 orders.
const (
	realtimePage    = 50
	maxRealtimePage = 200
)

// cancelScope is one group of orders POST /v5/order/cancel-all can
// address. Spot and option need no more than the category; linear needs
// one of symbol, baseCoin or settleCoin (Bybit's rule), so it is
// addressed per settle coin. Inverse contracts are settled in their base
// coin and cannot be addressed without naming each one: not covered.
type cancelScope struct {
	category, settleCoin string
	// filters are the orderFilter values to cancel with: spot's default
	// cancels normal orders only, conditional ones need their own call.
	filters []string
}

var cancelScopes = []cancelScope{
	{category: "spot", filters: []string{"Order", "tpslOrder", "StopOrder"}},
	{category: "linear", settleCoin: "USDT", filters: []string{""}},
	{category: "linear", settleCoin: "USDC", filters: []string{""}},
	{category: "option", filters: []string{""}},
}

func (c cancelScope) String() string {
	if c.settleCoin != "" {
		return c.category + "/" + c.settleCoin
	}
	return c.category
}

// CancelAll implements venue.CancelAller. For each of spot, linear (USDT
// and USDC settled) and option it lists the open orders with GET
// /v5/order/realtime; where there are any it calls POST
// /v5/order/cancel-all (its answer lists the orders cancelled) and lists
// again to see what is left. A scope that cannot be listed (not enabled on
// the account) is reported as a failure without an order id.
func (v *Venue) CancelAll(ctx context.Context, send venue.Sender) (venue.CancelResult, error) {
	var res venue.CancelResult
	for _, sc := range cancelScopes {
		before, err := realtime(ctx, send, sc, &res)
		if err != nil {
			res.Failed = append(res.Failed, venue.CancelFailure{Reason: sc.String() + ": " + err.Error()})
			continue
		}
		if len(before) == 0 {
			continue
		}
		// The first filter cancels normal orders; the next ones (spot's
		// conditional orders) are tried only while orders remain.
		var why string
		left := before
		for _, f := range sc.filters {
			body := map[string]string{"category": sc.category}
			if sc.settleCoin != "" {
				body["settleCoin"] = sc.settleCoin
			}
			if f != "" {
				body["orderFilter"] = f
			}
			b, err := json.Marshal(body)
			if err != nil {
				return res, fmt.Errorf("bybit: cancel-all: %w", err)
			}
			res.Requests++
			status, answer, err := send(ctx, &venue.Request{Method: http.MethodPost, Path: "/v5/order/cancel-all",
				Header: http.Header{"Content-Type": {"application/json"}}, Body: b})
			var a cancelAllAnswer
			switch {
			case err != nil:
				why = "cancel-all failed: " + err.Error()
			case status != http.StatusOK || json.Unmarshal(answer, &a) != nil || a.RetCode == nil:
				why = fmt.Sprintf("cancel-all answered %d", status)
			case *a.RetCode != 0:
				why = fmt.Sprintf("cancel-all retCode %d: %s", *a.RetCode, a.RetMsg)
			default:
				for _, o := range a.Result.List {
					res.AddCancelled(o.OrderID)
				}
			}
			if left, err = realtime(ctx, send, sc, &res); err != nil {
				break
			}
			if len(left) == 0 {
				break
			}
		}
		if err != nil {
			res.Failed = append(res.Failed, venue.CancelFailure{Reason: sc.String() + ": " + err.Error()})
			continue
		}
		for _, id := range left {
			reason := "still open after cancel-all"
			if why != "" {
				reason = why
			}
			res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: reason})
		}
	}
	return res, nil
}

// cancelAllAnswer is the part of cancel-all's answer keystile reads.
type cancelAllAnswer struct {
	RetCode *int   `json:"retCode"`
	RetMsg  string `json:"retMsg"`
	Result  struct {
		List []struct {
			OrderID string `json:"orderId"`
		} `json:"list"`
	} `json:"result"`
}

// realtime lists the ids of the open orders of one scope, page by page.
func realtime(ctx context.Context, send venue.Sender, sc cancelScope, res *venue.CancelResult) ([]string, error) {
	var ids []string
	cursor := ""
	for range maxRealtimePage {
		q := url.Values{"category": {sc.category}, "limit": {fmt.Sprint(realtimePage)}}
		if sc.settleCoin != "" {
			q.Set("settleCoin", sc.settleCoin)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		res.Requests++
		status, body, err := send(ctx, &venue.Request{Method: http.MethodGet, Path: "/v5/order/realtime", RawQuery: q.Encode(), Header: http.Header{}})
		if err != nil {
			return nil, fmt.Errorf("list open orders: %w", err)
		}
		var a bybitAnswer
		var msg struct {
			RetMsg string `json:"retMsg"`
		}
		_ = json.Unmarshal(body, &msg)
		if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.RetCode == nil || a.Result.List == nil && *a.RetCode == 0 {
			return nil, fmt.Errorf("list open orders: %w: status %d", venue.ErrCancelAnswer, status)
		}
		if *a.RetCode != 0 {
			return nil, fmt.Errorf("list open orders: %w: retCode %d: %s", venue.ErrCancelAnswer, *a.RetCode, msg.RetMsg)
		}
		for _, o := range a.Result.List {
			if o.OrderID == "" {
				return nil, fmt.Errorf("list open orders: %w: an order without orderId", venue.ErrCancelAnswer)
			}
			ids = append(ids, o.OrderID)
		}
		if a.Result.NextPageCursor == "" || len(a.Result.List) == 0 {
			return ids, nil
		}
		cursor = a.Result.NextPageCursor
	}
	return nil, fmt.Errorf("list open orders: %w: more than %d pages", venue.ErrCancelAnswer, maxRealtimePage)
}

var _ venue.CancelAller = (*Venue)(nil)
