package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// BudgetUse is one budget window's use, as the web console shows it.
type BudgetUse struct {
	Policy string
	Budget string
	// Scope is ScopeToken or ScopeAccount; Subject is what the window
	// counts for: "token:tok_..." or "account:<credential>".
	Scope   string
	Subject string
	// Window is "day" (the calendar day in the policy's time zone) or a
	// rolling duration ("1h0m0s"); Since is the window's start at the
	// time asked about.
	Window   string
	Since    time.Time
	Currency string
	Used     decimal.Decimal
	Limit    decimal.Decimal
}

// UsageQuery names the windows BudgetUsage reads: the budgets of the
// token's policy, token-scoped ones for TokenID, account-scoped ones for
// each account (venue credential name; "" stands for a venue without one,
// named by Venues at the same index).
type UsageQuery struct {
	TokenID  string
	Policy   string // "" = the default policy
	Accounts []string
	Venues   []string
	At       time.Time // zero: the engine's clock
}

// ErrNoBudgetStore is returned by BudgetUsage when the engine has no store.
var ErrNoBudgetStore = errors.New("policy: no budget store")

// BudgetUsage reads the use of every budget that applies to q, reserving
// nothing: each window is checked with the store's Check for an amount
// above its limit, whose *ExceededError carries what the window holds.
// So any BudgetStore answers it, with the same keys Evaluate reserves
// under. An unknown policy has no budgets (nil, nil).
func (e *Engine) BudgetUsage(ctx context.Context, q UsageQuery) ([]BudgetUse, error) {
	at := q.At
	if at.IsZero() {
		at = e.now()
	}
	p, d := e.lookup(q.Policy)
	if d != nil || len(p.budgets) == 0 {
		return nil, nil
	}
	if e.budgets == nil {
		return nil, ErrNoBudgetStore
	}
	var out []BudgetUse
	for _, b := range p.budgets {
		var subjects []string
		if b.scope == ScopeAccount {
			for i, a := range q.Accounts {
				ev := evaluation{in: &Input{Account: a}}
				if a == "" && i < len(q.Venues) {
					ev.in.Venue = q.Venues[i]
				}
				subjects = append(subjects, ev.scopeID(ScopeAccount))
			}
		} else {
			subjects = []string{"token:" + q.TokenID}
		}
		for _, subj := range subjects {
			c := budgetClaim(p, b, subj, at)
			used, err := e.used(ctx, at, c)
			if err != nil {
				return out, err
			}
			w := "day"
			if !b.day {
				w = b.window.String()
			}
			out = append(out, BudgetUse{Policy: p.name, Budget: b.name, Scope: b.scope, Subject: subj, Window: w, Since: c.Since,
				Currency: b.limit.Currency, Used: used, Limit: c.Limit})
		}
	}
	return out, nil
}

// used is what the window of c holds.
func (e *Engine) used(ctx context.Context, at time.Time, c Claim) (decimal.Decimal, error) {
	probe := c.Limit.Add(decimal.NewFromInt(1)).Abs()
	err := e.budgets.Check(ctx, at, probe, []Claim{c})
	var ex *ExceededError
	switch {
	case errors.As(err, &ex):
		return ex.Used, nil
	case err == nil:
		// Only possible with a negative total: nothing is used.
		return decimal.Zero, nil
	default:
		return decimal.Zero, fmt.Errorf("policy: read budget %s: %w", c.Key, err)
	}
}
