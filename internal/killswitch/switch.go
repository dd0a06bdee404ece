package killswitch

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/token"
)

// Defaults of Options.
const (
	DefaultRefresh       = time.Second
	DefaultDrainTimeout  = 5 * time.Second
	DefaultCancelTimeout = time.Minute
	DefaultCancelTries   = 3
)

// Auditor makes action records durable. *audit.Log satisfies it.
type Auditor interface {
	Action(ctx context.Context, e audit.Event) error
}

// Options configure New. Store is required; every other zero value is
// usable.
type Options struct {
	// Store keeps the trips (required).
	Store Store
	// Audit receives an action record for every lever pulled; if nil,
	// none is written.
	Audit Auditor
	// Logger; if nil, discard.
	Logger *slog.Logger
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
	// Refresh is how often Run re-reads the store (trips engaged or
	// cleared by another process); if 0, DefaultRefresh.
	Refresh time.Duration
	// DrainTimeout is how long Engage waits for the requests already on
	// their way to a venue it now covers; if 0, DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Endpoints lists the venue endpoints CancelOrders works on; if nil,
	// it cancels nothing.
	Endpoints func() []Endpoint
	// CancelTries is how many passes CancelOrders makes on a venue while
	// orders remain; if 0, DefaultCancelTries.
	CancelTries int
	// CancelBackoff is the wait before the second pass (doubled for each
	// next one); if 0, 250ms.
	CancelBackoff time.Duration
	// CancelTimeout bounds CancelOrders as a whole; if 0,
	// DefaultCancelTimeout.
	CancelTimeout time.Duration
	// BotScope is the widest scope a bot under policy may trip with POST
	// /-/kill ("" is the default policy); if nil, BotToken for all.
	BotScope func(policy string) BotScope
	// Scrub replaces registered secret values in text a bot or an
	// operator gives (reasons) before it is stored, logged or audited;
	// *logging.Redactor's Scrub fits. If nil, reasons are kept as given
	// (the audit log still replaces kst_ tokens).
	Scrub func([]byte) []byte
}

// Switch is the kill switch. Its state lives in the Store; the switch
// keeps a snapshot in memory for the request path (Guard, Transport),
// republished by every change it makes and by Refresh. It is safe for
// concurrent use.
type Switch struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	state atomic.Pointer[state]
	gate  gate

	mu      sync.Mutex // serialises Engage, Clear and Refresh
	pending []Trip     // engaged here but not yet persisted (store failing)
	known   map[int64]bool
}

// state is an immutable snapshot of the active trips.
type state struct {
	trips  []Trip
	all    bool
	venues map[string]bool
	tokens map[token.ID]bool
}

func newState(trips []Trip) *state {
	st := &state{trips: trips, venues: map[string]bool{}, tokens: map[token.ID]bool{}}
	for _, t := range trips {
		switch t.Scope {
		case ScopeAll:
			st.all = true
		case ScopeVenue:
			st.venues[t.Target] = true
		case ScopeToken:
			st.tokens[token.ID(t.Target)] = true
		}
	}
	return st
}

// coversVenue reports whether every request to venue is refused.
func (st *state) coversVenue(v string) bool { return st.all || st.venues[v] }

// covers reports whether a request of tok to venue is refused.
func (st *state) covers(tok token.ID, v string) bool { return st.all || st.venues[v] || st.tokens[tok] }

// New loads the active trips from the store. A store that cannot be read
// is an error: serving without knowing whether the switch is engaged
// would fail open.
func New(ctx context.Context, o Options) (*Switch, error) {
	if o.Store == nil {
		return nil, fmt.Errorf("%w: options: no store", ErrInvalid)
	}
	s := &Switch{o: o, log: o.Logger, now: o.Now, known: map[int64]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.o.Refresh <= 0 {
		s.o.Refresh = DefaultRefresh
	}
	if s.o.DrainTimeout <= 0 {
		s.o.DrainTimeout = DefaultDrainTimeout
	}
	if s.o.CancelTries <= 0 {
		s.o.CancelTries = DefaultCancelTries
	}
	if s.o.CancelBackoff <= 0 {
		s.o.CancelBackoff = 250 * time.Millisecond
	}
	if s.o.CancelTimeout <= 0 {
		s.o.CancelTimeout = DefaultCancelTimeout
	}
	s.gate.flights = map[*flight]struct{}{}
	trips, err := o.Store.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("killswitch: load: %w", err)
	}
	s.state.Store(newState(trips))
	for _, t := range trips {
		s.known[t.ID] = true
		s.log.Warn("killswitch: engaged at start", "trip", t.ID, "scope", t.Scope, "target", t.Target, "rule", t.Rule,
			"actor", t.Actor, "since", t.EngagedAt)
		_ = s.audit(ctx, observedEvent(t, "active at start")) // logged by audit
	}
	return s, nil
}

// Active returns the trips in force, oldest first (engaged here but not
// yet persisted ones last, with ID 0).
func (s *Switch) Active() []Trip { return slices.Clone(s.state.Load().trips) }

// Engaged reports whether any trip is in force.
func (s *Switch) Engaged() bool { return len(s.state.Load().trips) > 0 }

// Covers reports whether a request of token tok to venue would be
// refused now.
func (s *Switch) Covers(tok token.ID, venue string) bool { return s.state.Load().covers(tok, venue) }

// Engagement is a request to engage the switch.
type Engagement struct {
	Scope  Scope
	Target string // venue id or token public id; "" for ScopeAll
	Rule   string // RulePanic, RuleBot, RuleLossGuard+"."+name, a detector's
	Actor  string
	Reason string
	// Token is the token concerned, for the audit record (HMAC'd there):
	// the bot that tripped it, or the one a token-scoped trip covers.
	Token token.ID
	// RequestID correlates the audit record with a gateway request; if
	// "", a fresh one.
	RequestID string
	// Detail is extra evidence (compact JSON) for the audit record.
	Detail map[string]any
}

// Engaged is the outcome of Engage.
type Engaged struct {
	Trip Trip `json:"trip"`
	// New is false when an active trip already covered the same scope and
	// target (it is returned, and stays as it was).
	New bool `json:"new"`
	// Persisted is false when the store could not be written: the trip is
	// in force on this server only, and written at the next Refresh.
	Persisted bool `json:"persisted"`
	// InFlight counts requests that were on their way to a venue the trip
	// covers when it engaged; Unfinished those still unanswered after
	// Options.DrainTimeout.
	InFlight   int `json:"in_flight"`
	Unfinished int `json:"unfinished"`
	// AuditError is set when the action record could not be made durable.
	AuditError string `json:"audit_error,omitempty"`
}

// Engage engages the switch. The new state is published in memory first
// — from then on no request it covers passes the token check or leaves
// for a venue — then persisted; Engage returns once the requests already
// on their way to a covered venue have been answered (at most
// Options.DrainTimeout). It fails only on invalid input: a store failure
// leaves the trip in force here (Engaged.Persisted false).
func (s *Switch) Engage(ctx context.Context, e Engagement) (Engaged, error) {
	t := Trip{Scope: e.Scope, Target: e.Target, Rule: e.Rule, Actor: e.Actor, Reason: s.scrub(e.Reason), EngagedAt: s.now().UTC().Round(0)}
	if err := t.validate(); err != nil {
		return Engaged{}, err
	}
	s.mu.Lock()
	cur := s.state.Load()
	if i := slices.IndexFunc(cur.trips, func(a Trip) bool { return a.Scope == t.Scope && a.Target == t.Target }); i >= 0 {
		existing := cur.trips[i]
		s.mu.Unlock()
		return Engaged{Trip: existing, Persisted: existing.ID != 0}, nil
	}
	// In force at once, before the store write.
	waits := s.gate.publish(newState(append(slices.Clone(cur.trips), t)), &s.state, coverage(t))
	res := Engaged{Trip: t, New: true}
	stored, created, err := s.o.Store.Engage(ctx, t)
	switch {
	case err != nil:
		s.log.Error("killswitch: engaged on this server but not persisted; retrying at each refresh", "err", err)
		s.pending = append(s.pending, t)
	default:
		res.Trip, res.New, res.Persisted = stored, created, true
		s.known[stored.ID] = true
		trips := slices.Clone(cur.trips)
		trips = append(trips, stored)
		s.gate.publish(newState(trips), &s.state, nil)
	}
	s.mu.Unlock()
	res.InFlight, res.Unfinished = len(waits), s.gate.wait(ctx, waits, s.o.DrainTimeout)
	s.log.Warn("killswitch: engaged", "trip", res.Trip.ID, "scope", t.Scope, "target", t.Target, "rule", t.Rule, "actor", t.Actor,
		"persisted", res.Persisted, "in_flight", res.InFlight, "unfinished", res.Unfinished)
	detail := map[string]any{"trip": res.Trip.ID, "scope": t.Scope, "new": res.New, "persisted": res.Persisted,
		"in_flight": res.InFlight, "unfinished": res.Unfinished}
	if t.Scope == ScopeVenue {
		detail["venue"] = t.Target
	}
	for k, v := range e.Detail {
		detail[k] = v
	}
	ev := audit.Event{RequestID: e.RequestID, TokenID: string(e.Token), Operation: OpEngage, Decision: audit.Allow,
		Rule: t.Rule, Actor: t.Actor, Reason: t.Reason, Detail: compact(detail)}
	if t.Scope == ScopeVenue {
		ev.Venue = t.Target
	}
	if err := s.audit(ctx, ev); err != nil {
		res.AuditError = err.Error()
	}
	return res, nil
}

// coverage returns which in-flight requests t covers (nil: none to wait
// for, a token-scoped trip acts at the token check only).
func coverage(t Trip) func(venue string) bool {
	switch t.Scope {
	case ScopeAll:
		return func(string) bool { return true }
	case ScopeVenue:
		return func(v string) bool { return v == t.Target }
	}
	return nil
}

// Clearing is a request to clear trips.
type Clearing struct {
	Filter    Filter
	Actor     string
	Reason    string
	RequestID string
}

// Clear clears the trips f selects: in the store first (a store failure
// changes nothing: the switch stays engaged), then in memory. Callers
// check the admin's second factor before (see internal/admin).
func (s *Switch) Clear(ctx context.Context, c Clearing) ([]Trip, error) {
	if err := checkText("reason", c.Reason, MaxReason, true); err != nil {
		return nil, err
	}
	if err := checkText("actor", c.Actor, 128, true); err != nil {
		return nil, err
	}
	if c.Filter.Scope != "" && c.Filter.Scope != ScopeAll && c.Filter.Scope != ScopeVenue && c.Filter.Scope != ScopeToken {
		return nil, fmt.Errorf("%w: scope %q", ErrInvalid, c.Filter.Scope)
	}
	c.Reason = s.scrub(c.Reason)
	s.mu.Lock()
	now := s.now().UTC().Round(0)
	cleared, err := s.o.Store.Clear(ctx, c.Filter, c.Actor, c.Reason, now)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("killswitch: clear: %w", err)
	}
	kept := s.pending[:0]
	for _, p := range s.pending {
		if c.Filter.Matches(p) {
			p.ClearedAt, p.ClearedBy, p.ClearReason = now, c.Actor, c.Reason
			cleared = append(cleared, p)
			continue
		}
		kept = append(kept, p)
	}
	s.pending = kept
	active, err := s.o.Store.Active(ctx)
	if err != nil {
		// Keep everything that was not cleared in force.
		active = slices.DeleteFunc(slices.Clone(s.state.Load().trips), c.Filter.Matches)
		s.log.Warn("killswitch: re-read after clear failed; keeping the other trips", "err", err)
	} else {
		active = append(active, s.pending...)
	}
	s.gate.publish(newState(active), &s.state, nil)
	s.mu.Unlock()
	for _, t := range cleared {
		s.log.Warn("killswitch: cleared", "trip", t.ID, "scope", t.Scope, "target", t.Target, "by", c.Actor)
		ev := audit.Event{RequestID: c.RequestID, Operation: OpClear, Decision: audit.Allow, Rule: RuleClear,
			Actor: c.Actor, Reason: c.Reason, Detail: compact(map[string]any{"trip": t.ID, "scope": t.Scope, "engaged_rule": t.Rule,
				"engaged_by": t.Actor, "engaged_at": t.EngagedAt})}
		switch t.Scope {
		case ScopeVenue:
			ev.Venue = t.Target
		case ScopeToken:
			ev.TokenID = t.Target
		}
		if err := s.audit(ctx, ev); err != nil {
			s.log.Error("killswitch: clear not audited", "err", err)
		}
	}
	return cleared, nil
}

// Refresh re-reads the active trips from the store, so that trips
// engaged or cleared by another process take effect here; it also
// persists trips engaged while the store was failing. On a read error the
// state in force stays (never fail open).
func (s *Switch) Refresh(ctx context.Context) error {
	s.mu.Lock()
	var persisted []Trip
	for len(s.pending) > 0 {
		t, _, err := s.o.Store.Engage(ctx, s.pending[0])
		if err != nil {
			break
		}
		s.known[t.ID] = true
		persisted = append(persisted, t)
		s.pending = s.pending[1:]
	}
	active, err := s.o.Store.Active(ctx)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("killswitch: refresh: %w", err)
	}
	old := s.state.Load()
	var observed []Trip
	for _, t := range active {
		if !s.known[t.ID] {
			s.known[t.ID] = true
			observed = append(observed, t)
		}
	}
	var gone []Trip
	for _, t := range old.trips {
		if t.ID != 0 && !slices.ContainsFunc(active, func(a Trip) bool { return a.ID == t.ID }) {
			gone = append(gone, t)
		}
	}
	next := append(active, s.pending...)
	var covers []func(string) bool
	for _, t := range observed {
		if c := coverage(t); c != nil {
			covers = append(covers, c)
		}
	}
	waits := s.gate.publish(newState(next), &s.state, func(v string) bool {
		return slices.ContainsFunc(covers, func(c func(string) bool) bool { return c(v) })
	})
	s.mu.Unlock()
	for _, t := range persisted {
		s.log.Info("killswitch: trip engaged earlier is now persisted", "trip", t.ID)
	}
	for _, t := range observed {
		s.log.Warn("killswitch: engaged by another process", "trip", t.ID, "scope", t.Scope, "target", t.Target, "rule", t.Rule, "actor", t.Actor)
		_ = s.audit(ctx, observedEvent(t, "engaged by another process")) // logged by audit
	}
	for _, t := range gone {
		s.log.Warn("killswitch: cleared by another process", "trip", t.ID, "scope", t.Scope, "target", t.Target)
	}
	s.gate.wait(ctx, waits, s.o.DrainTimeout)
	return nil
}

// Run refreshes every Options.Refresh until ctx ends.
func (s *Switch) Run(ctx context.Context) {
	t := time.NewTicker(s.o.Refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Refresh(ctx); err != nil {
			if !failing && ctx.Err() == nil {
				s.log.Error("killswitch: cannot re-read the store; keeping the state in force", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			s.log.Info("killswitch: store readable again")
		}
		failing = false
	}
}

func observedEvent(t Trip, why string) audit.Event {
	ev := audit.Event{Operation: OpObserved, Decision: audit.Allow, Rule: t.Rule, Actor: t.Actor, Reason: t.Reason,
		Detail: compact(map[string]any{"trip": t.ID, "scope": t.Scope, "engaged_at": t.EngagedAt, "observed": why})}
	switch t.Scope {
	case ScopeVenue:
		ev.Venue = t.Target
	case ScopeToken:
		ev.TokenID = t.Target
	}
	return ev
}

// audit writes an action record; a nil Auditor writes nothing.
func (s *Switch) audit(ctx context.Context, e audit.Event) error {
	if s.o.Audit == nil {
		return nil
	}
	if e.RequestID == "" {
		e.RequestID = newRequestID()
	}
	e.Time = s.now()
	if err := s.o.Audit.Action(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("killswitch: action not audited", "operation", e.Operation, "err", err)
		return fmt.Errorf("killswitch: audit: %w", err)
	}
	return nil
}

// scrub applies Options.Scrub to a reason.
func (s *Switch) scrub(text string) string {
	if s.o.Scrub == nil || text == "" {
		return text
	}
	return string(s.o.Scrub([]byte(text)))
}

// compact encodes v as one line of JSON.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return `{"error":"unencodable detail"}`
	}
	return string(b)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRequestID names an action record (or a group of them, such as a
// panic and its cancellations), like the gateway's request ids.
func NewRequestID() string { return newRequestID() }

func newRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}
