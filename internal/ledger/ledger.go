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
