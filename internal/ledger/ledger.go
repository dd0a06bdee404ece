// Package ledger is the durable state of a write request before it is
// forwarded: its intent record, the budget it reserves and the idempotency
// key it claims, made durable as one write.
//
// # One write per order
//
// An order placement under a policy with a budget and an idempotency key
// used to wait for three durable writes: the budget reservation and the
// key's claim (one commit of the main database) and then the intent record
// (a commit of the audit log). Store.Open makes all three one atomic write,
// group-committed with the other orders in flight: in the embedded store
// one transaction of the main database, in which the audit log is kept
// (store/sqlite); in PostgreSQL one transaction (each replica appending to
// its own chain).
//
// Open checks before it writes, in this order: every budget claim must fit
// under its limit (else *policy.ExceededError: the policy's answer comes
// first, so a refused order claims no key), then the key must be free
// (else ErrKeyTaken, with the record stored under it). Either refusal
// writes nothing.
//
// # Settlement
//
// How the request ended is written later, without making the bot wait,
// through the stores' own interfaces: the answer stored for replays
// (idem.Ticket.DoneLater), the budget given back when the venue rejected
// the order or nothing was sent (policy.Hold.Release), the outcome record
// (audit.Sink). Each is crash-safe on its own: after kill -9 before it is
// durable, the key is still pending (a repeat is an unknown outcome: looked
// up at the venue, never re-sent blindly), the budget stays reserved (a
// limit can only be under-used, never exceeded) and the intent record
// stands without its outcome. Nothing else is kept in memory that is not
// rebuilt from the store at start.
package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/policy"
)

// ErrKeyTaken is Open's answer when the write's key is already stored (and
// younger than Key.NotBefore): nothing was written, and Key.Stored holds
// the record under the key.
var ErrKeyTaken = errors.New("ledger: idempotency key already stored")

// ErrNoAuditLog is Open's answer to a write with an intent record when the
// store keeps no audit log (the log is elsewhere: write the intent there).
var ErrNoAuditLog = errors.New("ledger: this store keeps no audit log")

// Write is what a write request makes durable before it is forwarded.
// Each part is optional; Open sets the result fields.
type Write struct {
	// Intent is the request's intent record, as known before forwarding
	// (the store HMACs identifiers, seals it into its audit chain).
	Intent *audit.Event
	// Budget is reserved against every claim.
	Budget *Budget
	// Key is claimed.
	Key *Key
}

// Budget is a budget reservation (policy.BudgetStore.Reserve).
type Budget struct {
	At     time.Time
	Amount decimal.Decimal
	Claims []policy.Claim
	// IDs is set by Open: one entry id per claim (policy.Hold gives them
	// back).
	IDs []int64
}

// Key is an idempotency claim (idem.Store.Claim).
type Key struct {
	// Record is stored if no record of its scope and key created at or
	// after NotBefore exists (an older one is replaced: it expired).
	Record    idem.Record
	NotBefore time.Time
	// Stored is set by Open when it returns ErrKeyTaken.
	Stored idem.Record
}

// Store makes writes durable. Implementations are safe for concurrent use.
type Store interface {
	// Open makes w durable as one atomic write: when it returns nil, the
	// budget reservation, the key's claim and the intent record are all
	// durable (fsynced); when it returns an error, none of them is stored
	// (an implementation that loses a commit's answer must learn the
	// outcome before it returns). It refuses, writing nothing, with
	// *policy.ExceededError (a claim would exceed its limit; checked
	// first) or ErrKeyTaken. Concurrent Opens are serialised where they
	// touch the same budget or key, so a limit holds exactly and a key
	// has one claim; they may share one commit. Open gives up with ctx's
	// error only while nothing of w has been written.
	Open(ctx context.Context, w *Write) error
}
