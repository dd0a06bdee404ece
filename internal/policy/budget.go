package policy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// Claim is one budget a reservation counts against: the entries under Key
// made at or after Since, plus the new amount, must not exceed Limit.
type Claim struct {
	// Key names the budget instance: scope and id, budget name, currency
	// and window (calendar-day keys include the date), e.g.
	// "token:tok_abc/daily/USDT/day:2025-01-31".
	Key string
	// Since is the start of the window.
	Since time.Time
	// Limit is the most the window may hold.
	Limit decimal.Decimal
}

// ExceededError is returned by BudgetStore.Reserve when a claim would go
// over its limit. Index is the claim's position in the request.
type ExceededError struct {
	Index  int
	Key    string
	Used   decimal.Decimal // already reserved in the window
	Amount decimal.Decimal // asked for
	Limit  decimal.Decimal
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("budget %s: %s used + %s asked > %s limit", e.Key, e.Used, e.Amount, e.Limit)
}

// BudgetStore persists budget reservations. Implementations are safe for
// concurrent use, also by several processes sharing the store: Reserve and
// Check of concurrent callers are serialised, so a limit holds exactly.
type BudgetStore interface {
	// Reserve records amount at time at against every claim, in one
	// transaction: all or none. If a claim would exceed its limit nothing
	// is written and the error is an *ExceededError naming the first such
	// claim. It returns one entry id per claim.
	Reserve(ctx context.Context, at time.Time, amount decimal.Decimal, claims []Claim) (ids []int64, err error)
	// Check is Reserve without writing anything (dry runs).
	Check(ctx context.Context, at time.Time, amount decimal.Decimal, claims []Claim) error
	// Release deletes the entries with these ids (unknown ids are ignored).
	Release(ctx context.Context, ids []int64) error
	// Prune deletes entries made before the given time.
	Prune(ctx context.Context, before time.Time) error
}

// Hold is the budget reserved for one request. The gateway calls exactly
// one of Release (the venue definitely rejected the order, or nothing was
// sent) and Keep (success, or an unknown outcome). Both are idempotent,
// and a nil Hold accepts both.
type Hold struct {
	store BudgetStore
	ids   []int64
	once  sync.Once
}

// Release gives the reserved budget back.
func (h *Hold) Release(ctx context.Context) error {
	if h == nil {
		return nil
	}
	var err error
	h.once.Do(func() {
		if err = h.store.Release(ctx, h.ids); err != nil {
			err = fmt.Errorf("policy: release budget: %w", err)
		}
	})
	return err
}

// Keep leaves the budget spent. It is a no-op apart from making a later
// Release do nothing.
func (h *Hold) Keep(context.Context) error {
	if h == nil {
		return nil
	}
	h.once.Do(func() {})
	return nil
}
