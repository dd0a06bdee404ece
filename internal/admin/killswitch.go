package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
)

// Kill switch API paths.
const (
	PathKillSwitch = "/v1/killswitch"
	PathPanic      = "/v1/killswitch/panic"
	PathPanicClear = "/v1/killswitch/clear"
)

// KillSwitch is what the admin API needs of the kill switch.
// *killswitch.Switch satisfies it.
type KillSwitch interface {
	Engage(ctx context.Context, e killswitch.Engagement) (killswitch.Engaged, error)
	Clear(ctx context.Context, c killswitch.Clearing) ([]killswitch.Trip, error)
	Active() []killswitch.Trip
	CancelOrders(ctx context.Context, c killswitch.Cancellation) ([]killswitch.CancelReport, error)
}

// PanicRequest is the body of POST /v1/killswitch/panic.
type PanicRequest struct {
	Reason string `json:"reason"`
	// Venue limits the panic to one venue id; "" freezes everything.
	Venue string `json:"venue,omitempty"`
	// CancelOrders cancels the open orders (of Venue, or everywhere) once
	// the switch is engaged.
	CancelOrders bool `json:"cancel_orders,omitempty"`
}

// PanicResult is the answer of a panic.
type PanicResult struct {
	Engaged killswitch.Engaged        `json:"engaged"`
	Cancel  []killswitch.CancelReport `json:"cancel,omitempty"`
	// CancelError is set when cancelling could not start.
	CancelError string `json:"cancel_error,omitempty"`
}

// ClearRequest is the body of POST /v1/killswitch/clear. Without Venue
// or Token every trip is cleared.
type ClearRequest struct {
	Reason string `json:"reason"`
	Venue  string `json:"venue,omitempty"`
	Token  string `json:"token,omitempty"`
}

// ClearResult lists the trips cleared.
type ClearResult struct {
	Cleared []killswitch.Trip `json:"cleared"`
}

// KillSwitchStatus is the answer of GET /v1/killswitch.
type KillSwitchStatus struct {
	Engaged bool              `json:"engaged"`
	Trips   []killswitch.Trip `json:"trips"`
}

// KillSwitchRoutes registers the kill switch endpoints. Clearing needs
// the admin second factor when one is enrolled (MFARoutes: MFAAlways,
// ActionPanicClear; the gate runs before the handler); engaging never
// does. knownVenue, if set, refuses a panic for a venue id
// that is not configured (a typo must not look like a frozen venue).
func KillSwitchRoutes(mux *http.ServeMux, ks KillSwitch, knownVenue func(string) bool, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		status, code := http.StatusInternalServerError, "internal"
		switch {
		case errors.Is(err, killswitch.ErrInvalid):
			status, code = http.StatusBadRequest, "invalid"
		case errors.Is(err, killswitch.ErrUnknownVenue):
			status, code = http.StatusNotFound, "not_found"
		}
		log.Warn("admin: kill switch request failed", "path", r.URL.Path, "status", status, "err", err)
		WriteError(w, status, code, err.Error())
	}
	actor := func(r *http.Request) string { return Actor(r.Context()) }
	mux.HandleFunc("GET "+PathKillSwitch, func(w http.ResponseWriter, _ *http.Request) {
		trips := ks.Active()
		WriteJSON(w, http.StatusOK, KillSwitchStatus{Engaged: len(trips) > 0, Trips: trips})
	})
	mux.HandleFunc("POST "+PathPanic, func(w http.ResponseWriter, r *http.Request) {
		var req PanicRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		e := killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: killswitch.RulePanic, Actor: actor(r), Reason: req.Reason,
			RequestID: killswitch.NewRequestID()}
		if req.Reason == "" {
			fail(w, r, errors.Join(killswitch.ErrInvalid, errors.New("a reason is required (--reason)")))
			return
		}
		if req.Venue != "" {
			if knownVenue != nil && !knownVenue(req.Venue) {
				fail(w, r, fmt.Errorf("%w: %q is not a configured venue", killswitch.ErrUnknownVenue, req.Venue))
				return
			}
			e.Scope, e.Target = killswitch.ScopeVenue, req.Venue
		}
		// A panic runs to the end even if the admin's client goes away
		// (the cancellation has its own timeout).
		ctx := context.WithoutCancel(r.Context())
		res, err := ks.Engage(ctx, e)
		if err != nil {
			fail(w, r, err)
			return
		}
		out := PanicResult{Engaged: res}
		if req.CancelOrders {
			reps, err := ks.CancelOrders(ctx, killswitch.Cancellation{Venue: req.Venue, Actor: e.Actor, Reason: req.Reason, RequestID: e.RequestID})
			if err != nil {
				out.CancelError = err.Error()
			}
			out.Cancel = reps
		}
		WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+PathPanicClear, func(w http.ResponseWriter, r *http.Request) {
		var req ClearRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		var f killswitch.Filter
		switch {
		case req.Venue != "" && req.Token != "":
			fail(w, r, errors.Join(killswitch.ErrInvalid, errors.New("give --venue or --token, not both")))
			return
		case req.Venue != "":
			f = killswitch.Filter{Scope: killswitch.ScopeVenue, Target: req.Venue}
		case req.Token != "":
			if strings.HasPrefix(req.Token, "kst_") {
				fail(w, r, errors.Join(killswitch.ErrInvalid, errors.New("--token takes the token's public id (tok_...), never the token itself")))
				return
			}
			f = killswitch.Filter{Scope: killswitch.ScopeToken, Target: req.Token}
		}
		cleared, err := ks.Clear(r.Context(), killswitch.Clearing{Filter: f, Actor: actor(r), Reason: req.Reason})
		if err != nil {
			fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, ClearResult{Cleared: cleared})
	})
}

// Actor names the admin behind a request for audit records and kill
// switch trips: "admin uid=N" for a socket peer, "admin token:NAME" for
// an admin bearer token on the TCP listener.
func Actor(ctx context.Context) string {
	if p, ok := ctx.Value(principalKey{}).(mfa.Principal); ok {
		return "admin " + string(p)
	}
	return killswitch.AdminActor(PeerUID(ctx))
}

// Panic engages the kill switch (and cancels orders if asked).
func (c *Client) Panic(ctx context.Context, req PanicRequest) (PanicResult, error) {
	var out PanicResult
	return out, c.Do(ctx, http.MethodPost, PathPanic, req, &out)
}

// PanicClear clears trips of the kill switch.
func (c *Client) PanicClear(ctx context.Context, req ClearRequest) (ClearResult, error) {
	var out ClearResult
	return out, c.Do(ctx, http.MethodPost, PathPanicClear, req, &out)
}

// KillSwitch returns the switch's state.
func (c *Client) KillSwitch(ctx context.Context) (KillSwitchStatus, error) {
	var out KillSwitchStatus
	return out, c.Do(ctx, http.MethodGet, PathKillSwitch, nil, &out)
}

var _ KillSwitch = (*killswitch.Switch)(nil)
