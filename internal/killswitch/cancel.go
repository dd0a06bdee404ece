package killswitch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/venue"
)

// Endpoint is one served venue endpoint keystile can send its own
// requests to: Send signs them with the venue's credential and sends them
// over the venue's upstream transport (the gateway's Direct).
type Endpoint struct {
	Venue string
	Test  bool // the venue's test endpoint (kst_test_ tokens)
	Impl  venue.Venue
	Send  venue.Sender
}

// CancelReport is what cancelling open orders did on one venue endpoint.
type CancelReport struct {
	Venue    string `json:"venue"`
	Endpoint string `json:"endpoint"` // live or test
	// Supported is false for a venue type with no cancel-all procedure
	// (nothing was sent).
	Supported bool                  `json:"supported"`
	Cancelled []string              `json:"cancelled"`
	Failed    []venue.CancelFailure `json:"failed,omitempty"`
	Passes    int                   `json:"passes"`
	Requests  int                   `json:"requests"`
	Error     string                `json:"error,omitempty"`
	Duration  time.Duration         `json:"duration_ns"`
}

// OK reports whether every order was cancelled (or there was none).
func (r CancelReport) OK() bool { return r.Supported && r.Error == "" && len(r.Failed) == 0 }

// Cancellation is a request to cancel open orders.
type Cancellation struct {
	// Venue restricts it to one venue id; "" means every venue.
	Venue     string
	Actor     string
	Reason    string
	RequestID string
}

// ErrUnknownVenue: Cancellation.Venue names no served venue.
var ErrUnknownVenue = errors.New("killswitch: no such venue")

// CancelOrders cancels the open orders on every served venue endpoint (or
// one venue's), concurrently, through each venue's own cancel-all
// procedure (venue.CancelAller), signed and sent like any request but
// allowed through the engaged switch. A venue is passed over again, after
// a backoff, while orders remain or a pass failed, up to
// Options.CancelTries passes; everything stops at Options.CancelTimeout.
// Each endpoint's report is an audit record (orders.cancel_all).
func (s *Switch) CancelOrders(ctx context.Context, c Cancellation) ([]CancelReport, error) {
	if err := checkText("reason", c.Reason, MaxReason, false); err != nil {
		return nil, err
	}
	c.Reason = s.scrub(c.Reason)
	var eps []Endpoint
	if s.o.Endpoints != nil {
		eps = s.o.Endpoints()
	}
	if c.Venue != "" {
		eps = slices.DeleteFunc(eps, func(e Endpoint) bool { return e.Venue != c.Venue })
		if len(eps) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrUnknownVenue, c.Venue)
		}
	}
	ctx, cancel := context.WithTimeout(internal(ctx), s.o.CancelTimeout)
	defer cancel()
	reports := make([]CancelReport, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = s.cancelEndpoint(ctx, ep)
		}()
	}
	wg.Wait()
	slices.SortFunc(reports, func(a, b CancelReport) int {
		if a.Venue != b.Venue {
			if a.Venue < b.Venue {
				return -1
			}
			return 1
		}
		if a.Endpoint < b.Endpoint {
			return -1
		}
		return 0
	})
	for _, r := range reports {
		s.auditCancel(ctx, c, r)
	}
	return reports, nil
}

// cancelEndpoint runs the passes on one endpoint.
func (s *Switch) cancelEndpoint(ctx context.Context, ep Endpoint) CancelReport {
	start := time.Now()
	rep := CancelReport{Venue: ep.Venue, Endpoint: "live", Cancelled: []string{}}
	if ep.Test {
		rep.Endpoint = "test"
	}
	ca, ok := ep.Impl.(venue.CancelAller)
	if !ok || ep.Send == nil {
		rep.Error = "this venue type has no cancel-all procedure: cancel its orders at the venue"
		return rep
	}
	rep.Supported = true
	wait := s.o.CancelBackoff
	for pass := 1; pass <= s.o.CancelTries; pass++ {
		rep.Passes = pass
		res, err := ca.CancelAll(ctx, ep.Send)
		rep.Requests += res.Requests
		for _, id := range res.Cancelled {
			if !slices.Contains(rep.Cancelled, id) {
				rep.Cancelled = append(rep.Cancelled, id)
			}
		}
		rep.Failed, rep.Error = res.Failed, ""
		if err != nil {
			rep.Error = err.Error()
		}
		if err == nil && len(res.Failed) == 0 {
			break
		}
		if pass == s.o.CancelTries {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			rep.Error = fmt.Sprintf("stopped after %d passes: %v (last: %s)", pass, ctx.Err(), rep.Error)
			rep.Duration = time.Since(start)
			return rep
		case <-t.C:
		}
		wait *= 2
	}
	rep.Duration = time.Since(start)
	return rep
}

// auditCancel records one endpoint's report.
func (s *Switch) auditCancel(ctx context.Context, c Cancellation, r CancelReport) {
	ids := r.Cancelled
	if len(ids) > 100 {
		ids = ids[:100]
	}
	failed := r.Failed
	if len(failed) > 20 {
		failed = failed[:20]
	}
	ev := audit.Event{RequestID: c.RequestID, Venue: r.Venue, Operation: OpCancelOrders, Decision: audit.Allow,
		Rule: RuleCancelOrders, Actor: c.Actor, Reason: c.Reason, Error: r.Error,
		Detail: compact(map[string]any{"endpoint": r.Endpoint, "supported": r.Supported, "cancelled": len(r.Cancelled),
			"order_ids": ids, "failed": len(r.Failed), "failures": failed, "passes": r.Passes, "requests": r.Requests})}
	if !r.OK() {
		ev.Decision = audit.Error
	}
	_ = s.audit(ctx, ev)
}
