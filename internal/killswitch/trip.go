package killswitch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Scope is what one trip of the switch covers.
type Scope string

// Scopes.
const (
	// ScopeAll covers every token on every venue.
	ScopeAll Scope = "all"
	// ScopeVenue covers every request to one venue (Target), whatever the
	// token.
	ScopeVenue Scope = "venue"
	// ScopeToken covers every request of one token (Target, its public id).
	ScopeToken Scope = "token"
)

// Rules name what engaged the switch; they appear in audit records.
const (
	RulePanic        = "killswitch.panic"         // an admin's keystile panic
	RuleBot          = "killswitch.bot"           // a bot's POST /-/kill
	RuleLossGuard    = "killswitch.loss_guard"    // + "." + the guard's name
	RuleCancelOrders = "killswitch.cancel_orders" // orders cancelled with a panic
	RuleClear        = "killswitch.clear"         // an admin's keystile panic clear
)

// Audit operations of the switch's records.
const (
	OpEngage       = "killswitch.engage"
	OpClear        = "killswitch.clear"
	OpObserved     = "killswitch.observed"
	OpCancelOrders = "orders.cancel_all"
)

// Trip is one engagement of the switch, active until an admin clears it.
type Trip struct {
	ID     int64  `json:"id"` // assigned by the store; 0 while not persisted
	Scope  Scope  `json:"scope"`
	Target string `json:"target,omitempty"` // venue id or token public id; "" for ScopeAll
	// Rule names what engaged it (RulePanic, RuleBot, a loss guard, a
	// detector); Actor who ("admin uid=1000", "bot", "killswitch.loss_guard");
	// Reason why, in the words given.
	Rule      string    `json:"rule"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason,omitempty"`
	EngagedAt time.Time `json:"engaged_at"`

	// Set on trips Clear returns.
	ClearedAt   time.Time `json:"cleared_at,omitzero"`
	ClearedBy   string    `json:"cleared_by,omitempty"`
	ClearReason string    `json:"clear_reason,omitempty"`
}

// Filter selects active trips to clear: Scope "" selects every scope;
// Target "" every target of the scope.
type Filter struct {
	Scope  Scope
	Target string
}

// Matches reports whether f selects t.
func (f Filter) Matches(t Trip) bool {
	return (f.Scope == "" || f.Scope == t.Scope) && (f.Target == "" || f.Target == t.Target)
}

// Store keeps trips durably. It is the switch's source of truth: every
// process sharing a store (replicas of serve, the CLI when no server
// runs) re-reads Active and so sees the same switch. Implementations are
// safe for concurrent use by several processes.
type Store interface {
	// Engage records t as active unless an active trip with the same
	// scope and target exists. It returns the active trip (t with its ID,
	// or the existing one) and whether it was created.
	Engage(ctx context.Context, t Trip) (Trip, bool, error)
	// Active returns the active trips, oldest first.
	Active(ctx context.Context) ([]Trip, error)
	// Clear marks the active trips f selects as cleared at at, by by, for
	// reason, and returns them (none: an empty slice, no error).
	Clear(ctx context.Context, f Filter, by, reason string, at time.Time) ([]Trip, error)
	// LastClear returns when a trip of scope and target was last cleared
	// (the zero time if never).
	LastClear(ctx context.Context, scope Scope, target string) (time.Time, error)
}

// Errors.
var (
	// ErrInvalid wraps every refusal of a malformed engagement, clear or
	// bot request.
	ErrInvalid = errors.New("killswitch: invalid")
	// ErrEngaged is the refusal of a request the switch covers, returned
	// by the transport gate (it also wraps upstream.ErrRefused).
	ErrEngaged = errors.New("killswitch: engaged")
)

// MaxReason bounds a reason's length in bytes.
const MaxReason = 512

// checkText validates a reason or actor: printable UTF-8, at most max
// bytes; required refuses an empty one.
func checkText(field, s string, max int, required bool) error {
	if required && strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	if len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s: want at most %d bytes of UTF-8", ErrInvalid, field, max)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s: unprintable character %U", ErrInvalid, field, r)
		}
	}
	return nil
}

// validName reports whether s looks like a venue id or token public id:
// 1-64 bytes of [a-z0-9_-].
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validate checks a trip's scope and target.
func (t Trip) validate() error {
	switch t.Scope {
	case ScopeAll:
		if t.Target != "" {
			return fmt.Errorf("%w: scope all takes no target", ErrInvalid)
		}
	case ScopeVenue, ScopeToken:
		if !validName(t.Target) {
			return fmt.Errorf("%w: scope %s needs a target of 1-64 characters [a-z0-9_-], got %q", ErrInvalid, t.Scope, t.Target)
		}
	default:
		return fmt.Errorf("%w: scope %q: want all, venue or token", ErrInvalid, t.Scope)
	}
	if err := checkText("reason", t.Reason, MaxReason, false); err != nil {
		return err
	}
	if err := checkText("actor", t.Actor, 128, true); err != nil {
		return err
	}
	return checkText("rule", t.Rule, 128, true)
}

// AdminActor names an admin by the uid the admin socket reported.
func AdminActor(uid int) string { return fmt.Sprintf("admin uid=%d", uid) }
