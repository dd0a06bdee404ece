package venue

import (
	"context"
	"errors"
	"slices"
)

// Sender sends one request keystile makes itself (not a bot's) to the
// venue: signed by the venue's Authenticate inside the vault, over the
// venue's own upstream transport, exactly like a bot request. It returns
// the answer's status and body (credential echoes scrubbed). Path and
// RawQuery are relative to the endpoint's base URL, as in Request.
type Sender func(ctx context.Context, r *Request) (status int, body []byte, err error)

// CancelAller is implemented by venues that can cancel every open order of
// the account their credential belongs to (the kill switch's
// --cancel-orders). CancelAll makes one pass through the venue's own
// cancel-all procedure with send — typically: list the open orders, cancel
// them with the venue's cancel-all or batch-cancel endpoint, list them
// again — and reports what the venue confirmed. It does not retry; the
// caller runs it again while orders remain. Implementations are safe for
// concurrent use.
type CancelAller interface {
	CancelAll(ctx context.Context, send Sender) (CancelResult, error)
}

// CancelResult is what one CancelAll pass achieved.
type CancelResult struct {
	// Cancelled are the venue order ids the venue confirmed cancelled.
	Cancelled []string
	// Failed are orders the venue refused to cancel, or that were still
	// open when the pass listed them again, with the venue's reason.
	Failed []CancelFailure
	// Requests counts the requests the pass sent.
	Requests int
}

// CancelFailure is one order that could not be cancelled. OrderID is
// empty when a whole group of orders could not be listed or addressed
// (Reason names the group and the venue's answer).
type CancelFailure struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// ErrCancelAnswer reports a cancel-all answer keystile cannot read, or an
// error answer from the venue; CancelAll wraps it with the venue's words.
var ErrCancelAnswer = errors.New("venue: cancel-all answer")

// AddCancelled appends ids not yet in r.Cancelled.
func (r *CancelResult) AddCancelled(ids ...string) {
	for _, id := range ids {
		if id != "" && !slices.Contains(r.Cancelled, id) {
			r.Cancelled = append(r.Cancelled, id)
		}
	}
}

// StillOpen records each id of open (listed after the cancel) as a
// failure, unless the venue already gave a reason for it.
func (r *CancelResult) StillOpen(open []string) {
	for _, id := range open {
		if !slices.ContainsFunc(r.Failed, func(f CancelFailure) bool { return f.OrderID == id }) {
			r.Failed = append(r.Failed, CancelFailure{OrderID: id, Reason: "still open after cancel-all"})
		}
	}
}

// Chunks splits ids into slices of at most n (n >= 1), for batch-cancel
// endpoints with a per-request limit.
func Chunks(ids []string, n int) [][]string {
	n = max(n, 1)
	var out [][]string
	for len(ids) > 0 {
		k := min(n, len(ids))
		out = append(out, ids[:k:k])
		ids = ids[k:]
	}
	return out
}
