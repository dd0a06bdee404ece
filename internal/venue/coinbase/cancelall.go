package coinbase

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// Cancel-all paging: List Orders pages, and ids per batch_cancel call.
const (
	openPage      = 250
	maxOpenPages  = 40
	cancelPerCall = 100
)

// openAnswer is the part of List Orders' answer keystile reads.
type openAnswer struct {
	Orders []struct {
		OrderID string `json:"order_id"`
		Status  string `json:"status"`
	} `json:"orders"`
	HasNext *bool  `json:"has_next"`
	Cursor  string `json:"cursor"`
}

// batchCancelAnswer is batch_cancel's answer: one result per order id.
type batchCancelAnswer struct {
	Results []struct {
		Success       bool   `json:"success"`
		FailureReason string `json:"failure_reason"`
		OrderID       string `json:"order_id"`
	} `json:"results"`
}

// CancelAll implements venue.CancelAller: GET
// /api/v3/brokerage/orders/historical/batch?order_status=OPEN (paged with
// cursor) lists the open orders, POST /api/v3/brokerage/orders/batch_cancel
// cancels them (100 ids per call; a result per id), and a second listing
// shows what is left.
func (v *Venue) CancelAll(ctx context.Context, send venue.Sender) (venue.CancelResult, error) {
	var res venue.CancelResult
	open, err := listOpen(ctx, send, &res)
	if err != nil {
		return res, err
	}
	for _, chunk := range venue.Chunks(open, cancelPerCall) {
		body, err := json.Marshal(map[string][]string{"order_ids": chunk})
		if err != nil {
			return res, fmt.Errorf("coinbase: batch_cancel: %w", err)
		}
		res.Requests++
		status, answer, err := send(ctx, &venue.Request{Method: http.MethodPost, Path: "/api/v3/brokerage/orders/batch_cancel",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: body})
		if err != nil {
			for _, id := range chunk {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: "cancel request failed: " + err.Error()})
			}
			continue
		}
		var a batchCancelAnswer
		if status != http.StatusOK || json.Unmarshal(answer, &a) != nil || a.Results == nil {
			for _, id := range chunk {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: fmt.Sprintf("batch_cancel answered %d", status)})
			}
			continue
		}
		for _, r := range a.Results {
			if r.Success {
				res.AddCancelled(r.OrderID)
			} else {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: r.OrderID, Reason: "coinbase: " + r.FailureReason})
			}
		}
	}
	left, err := listOpen(ctx, send, &res)
	if err != nil {
		return res, err
	}
	res.StillOpen(left)
	return res, nil
}

// listOpen lists the ids of every open order, page by page.
func listOpen(ctx context.Context, send venue.Sender, res *venue.CancelResult) ([]string, error) {
	var ids []string
	cursor := ""
	for range maxOpenPages {
		q := url.Values{"order_status": {"OPEN"}, "limit": {fmt.Sprint(openPage)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		res.Requests++
		status, body, err := send(ctx, &venue.Request{Method: http.MethodGet, Path: "/api/v3/brokerage/orders/historical/batch",
			RawQuery: q.Encode(), Header: http.Header{}})
		if err != nil {
			return nil, fmt.Errorf("coinbase: list open orders: %w", err)
		}
		var a openAnswer
		if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.Orders == nil || a.HasNext == nil {
			return nil, fmt.Errorf("coinbase: list open orders: %w: status %d", venue.ErrCancelAnswer, status)
		}
		for _, o := range a.Orders {
			if o.OrderID == "" {
				return nil, fmt.Errorf("coinbase: list open orders: %w: an order without order_id", venue.ErrCancelAnswer)
			}
			if o.Status == "OPEN" || o.Status == "" {
				ids = append(ids, o.OrderID)
			}
		}
		if !*a.HasNext {
			return ids, nil
		}
		if a.Cursor == "" {
			return nil, fmt.Errorf("coinbase: list open orders: %w: has_next without a cursor", venue.ErrCancelAnswer)
		}
		cursor = a.Cursor
	}
	return nil, fmt.Errorf("coinbase: list open orders: %w: more than %d pages", venue.ErrCancelAnswer, maxOpenPages)
}

var _ venue.CancelAller = (*Venue)(nil)
