package kraken

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// cancelAnswer is the part of OpenOrders and CancelAll answers keystile
// reads: {"error":[...],"result":{"open":{txid:{...}}}} and
// {"error":[],"result":{"count":n}}.
type cancelAnswer struct {
	Error  []string `json:"error"`
	Result struct {
		Open  map[string]json.RawMessage `json:"open"`
		Count *int                       `json:"count"`
	} `json:"result"`
}

// CancelAll implements venue.CancelAller: OpenOrders names the open
// orders, CancelAll (POST /0/private/CancelAll, which answers a count, not
// ids) cancels every one of them, and a second OpenOrders lists what is
// left: the orders listed first and gone now are reported cancelled.
func (v *Venue) CancelAll(ctx context.Context, send venue.Sender) (venue.CancelResult, error) {
	var res venue.CancelResult
	before, err := v.openOrders(ctx, send, &res)
	if err != nil {
		return res, err
	}
	res.Requests++
	status, body, err := send(ctx, privateRequest("/0/private/CancelAll"))
	if err != nil {
		return res, fmt.Errorf("kraken: CancelAll: %w", err)
	}
	var a cancelAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil {
		return res, fmt.Errorf("kraken: CancelAll: %w: status %d", venue.ErrCancelAnswer, status)
	}
	if len(a.Error) > 0 {
		return res, fmt.Errorf("kraken: CancelAll: %w: %s", venue.ErrCancelAnswer, strings.Join(a.Error, "; "))
	}
	if a.Result.Count == nil {
		return res, fmt.Errorf("kraken: CancelAll: %w: no count", venue.ErrCancelAnswer)
	}
	after, err := v.openOrders(ctx, send, &res)
	if err != nil {
		return res, err
	}
	for _, id := range before {
		if !slices.Contains(after, id) {
			res.AddCancelled(id)
		}
	}
	res.StillOpen(after)
	return res, nil
}

// openOrders lists the ids of the account's open orders, sorted.
func (v *Venue) openOrders(ctx context.Context, send venue.Sender, res *venue.CancelResult) ([]string, error) {
	res.Requests++
	status, body, err := send(ctx, privateRequest("/0/private/OpenOrders"))
	if err != nil {
		return nil, fmt.Errorf("kraken: OpenOrders: %w", err)
	}
	var a cancelAnswer
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil {
		return nil, fmt.Errorf("kraken: OpenOrders: %w: status %d", venue.ErrCancelAnswer, status)
	}
	if len(a.Error) > 0 {
		return nil, fmt.Errorf("kraken: OpenOrders: %w: %s", venue.ErrCancelAnswer, strings.Join(a.Error, "; "))
	}
	if a.Result.Open == nil {
		return nil, fmt.Errorf("kraken: OpenOrders: %w: no open member", venue.ErrCancelAnswer)
	}
	ids := make([]string, 0, len(a.Result.Open))
	for id := range a.Result.Open {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// privateRequest is a private method call without parameters; the nonce
// is added when it is signed.
func privateRequest(path string) *venue.Request {
	return &venue.Request{Method: http.MethodPost, Path: path,
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}
}

var _ venue.CancelAller = (*Venue)(nil)
