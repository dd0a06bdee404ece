package okx

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keystile/keystile/internal/venue"
)

// Cancel-all limits documented by OKX: orders-pending pages hold at most
// 100 orders, cancel-batch-orders takes at most 20.
const (
	pendingPage = 100
	cancelBatch = 20
	// maxPendingPages bounds one pass's listing (10 000 orders).
	maxPendingPages = 100
)

// pendingAnswer is GET /api/v5/trade/orders-pending's answer, and
// cancel-batch-orders' (code "0" all cancelled, "1" none, "2" some; the
// per-order sCode says which).
type pendingAnswer struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
	Data []struct {
		InstID string `json:"instId"`
		OrdID  string `json:"ordId"`
		SCode  string `json:"sCode"`
		SMsg   string `json:"sMsg"`
	} `json:"data"`
}

type pendingOrder struct{ instID, ordID string }

// CancelAll implements venue.CancelAller: GET /api/v5/trade/orders-pending
// (every instrument type, paged with after=<last ordId>) lists the open
// orders, POST /api/v5/trade/cancel-batch-orders cancels them 20 at a time
// (per-order sCode "0" = cancelled), and a second listing shows what is
// left. Algo orders are not covered (they have their own endpoints).
func (v *Venue) CancelAll(ctx context.Context, send venue.Sender) (venue.CancelResult, error) {
	var res venue.CancelResult
	open, err := v.pending(ctx, send, &res)
	if err != nil {
		return res, err
	}
	ids := make([]string, 0, len(open))
	inst := map[string]string{}
	for _, o := range open {
		ids = append(ids, o.ordID)
		inst[o.ordID] = o.instID
	}
	for _, chunk := range venue.Chunks(ids, cancelBatch) {
		type item struct {
			InstID string `json:"instId"`
			OrdID  string `json:"ordId"`
		}
		items := make([]item, 0, len(chunk))
		for _, id := range chunk {
			items = append(items, item{InstID: inst[id], OrdID: id})
		}
		body, err := json.Marshal(items)
		if err != nil {
			return res, fmt.Errorf("okx: cancel-batch-orders: %w", err)
		}
		res.Requests++
		status, answer, err := send(ctx, &venue.Request{Method: http.MethodPost, Path: "/api/v5/trade/cancel-batch-orders",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: body})
		if err != nil {
			for _, id := range chunk {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: "cancel request failed: " + err.Error()})
			}
			continue
		}
		var a pendingAnswer
		if json.Unmarshal(answer, &a) != nil {
			return res, fmt.Errorf("okx: cancel-batch-orders: %w: status %d", venue.ErrCancelAnswer, status)
		}
		if status != http.StatusOK || (a.Code != "0" && a.Code != "1" && a.Code != "2") {
			for _, id := range chunk {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: fmt.Sprintf("okx %d: code %s: %s", status, a.Code, a.Msg)})
			}
			continue
		}
		for _, d := range a.Data {
			if d.SCode == "0" {
				res.AddCancelled(d.OrdID)
			} else {
				res.Failed = append(res.Failed, venue.CancelFailure{OrderID: d.OrdID, Reason: fmt.Sprintf("okx sCode %s: %s", d.SCode, d.SMsg)})
			}
		}
	}
	left, err := v.pending(ctx, send, &res)
	if err != nil {
		return res, err
	}
	still := make([]string, 0, len(left))
	for _, o := range left {
		still = append(still, o.ordID)
	}
	res.StillOpen(still)
	return res, nil
}

// pending lists every open order, page by page.
func (v *Venue) pending(ctx context.Context, send venue.Sender, res *venue.CancelResult) ([]pendingOrder, error) {
	var out []pendingOrder
	after := ""
	for range maxPendingPages {
		q := url.Values{"limit": {fmt.Sprint(pendingPage)}}
		if after != "" {
			q.Set("after", after)
		}
		res.Requests++
		status, body, err := send(ctx, &venue.Request{Method: http.MethodGet, Path: "/api/v5/trade/orders-pending", RawQuery: q.Encode(), Header: http.Header{}})
		if err != nil {
			return nil, fmt.Errorf("okx: orders-pending: %w", err)
		}
		var a pendingAnswer
		if json.Unmarshal(body, &a) != nil {
			return nil, fmt.Errorf("okx: orders-pending: %w: status %d", venue.ErrCancelAnswer, status)
		}
		if status != http.StatusOK || a.Code != "0" {
			return nil, fmt.Errorf("okx: orders-pending: %w: status %d, code %s: %s", venue.ErrCancelAnswer, status, a.Code, a.Msg)
		}
		for _, d := range a.Data {
			if d.OrdID == "" || d.InstID == "" {
				return nil, fmt.Errorf("okx: orders-pending: %w: an order without instId or ordId", venue.ErrCancelAnswer)
			}
			out = append(out, pendingOrder{instID: d.InstID, ordID: d.OrdID})
		}
		if len(a.Data) < pendingPage {
			return out, nil
		}
		after = a.Data[len(a.Data)-1].OrdID
	}
	return nil, fmt.Errorf("okx: orders-pending: %w: more than %d pages", venue.ErrCancelAnswer, maxPendingPages)
}

var _ venue.CancelAller = (*Venue)(nil)
