package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
)

// BudgetStore implements policy.BudgetStore on the database. Reservations
// run in BEGIN IMMEDIATE transactions (the database's _txlock), so
// concurrent reservations — also from other processes sharing the file —
// are serialised and a limit holds exactly.
type BudgetStore struct{ d *DB }

// Budgets returns the database's budget store.
func (d *DB) Budgets() *BudgetStore { return &BudgetStore{d: d} }

// Reserve implements policy.BudgetStore.
func (s *BudgetStore) Reserve(ctx context.Context, at time.Time, amount decimal.Decimal, claims []policy.Claim) ([]int64, error) {
	if err := checkAmount(amount, claims); err != nil {
		return nil, err
	}
	var ids []int64
	err := s.d.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.check(ctx, tx, amount, claims); err != nil {
			return err
		}
		ids = make([]int64, 0, len(claims))
		for _, c := range claims {
			var id int64
			if err := tx.QueryRowContext(ctx, `INSERT INTO budget_entries(key, at, amount) VALUES (?, ?, ?) RETURNING id`,
				c.Key, at.UnixNano(), amount.String()).Scan(&id); err != nil {
				return fmt.Errorf("sqlite: reserve budget: %w", err)
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// Check implements policy.BudgetStore: Reserve without writing.
func (s *BudgetStore) Check(ctx context.Context, _ time.Time, amount decimal.Decimal, claims []policy.Claim) error {
	if err := checkAmount(amount, claims); err != nil {
		return err
	}
	tx, err := s.d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: check budget: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	return s.check(ctx, tx, amount, claims)
}

func checkAmount(amount decimal.Decimal, claims []policy.Claim) error {
	if amount.IsNegative() {
		return errors.New("sqlite: budget amount is negative")
	}
	if len(claims) == 0 {
		return errors.New("sqlite: budget reservation without claims")
	}
	return nil
}

// check sums each claim's window and compares it with the limit.
func (s *BudgetStore) check(ctx context.Context, tx *sql.Tx, amount decimal.Decimal, claims []policy.Claim) error {
	for i, c := range claims {
		used, err := sumWindow(ctx, tx, c.Key, c.Since)
		if err != nil {
			return err
		}
		if used.Add(amount).GreaterThan(c.Limit) {
			return &policy.ExceededError{Index: i, Key: c.Key, Used: used, Amount: amount, Limit: c.Limit}
		}
	}
	return nil
}

func sumWindow(ctx context.Context, tx *sql.Tx, key string, since time.Time) (decimal.Decimal, error) {
	rows, err := tx.QueryContext(ctx, `SELECT amount FROM budget_entries WHERE key = ? AND at >= ?`, key, since.UnixNano())
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("sqlite: read budget: %w", err)
	}
	defer rows.Close()
	sum := decimal.Zero
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return decimal.Decimal{}, fmt.Errorf("sqlite: read budget: %w", err)
		}
		v, err := decimal.NewFromString(a)
		if err != nil {
			return decimal.Decimal{}, fmt.Errorf("sqlite: budget entry amount %q: %w", a, err)
		}
		sum = sum.Add(v)
	}
	if err := rows.Err(); err != nil {
		return decimal.Decimal{}, fmt.Errorf("sqlite: read budget: %w", err)
	}
	return sum, nil
}

// Release implements policy.BudgetStore.
func (s *BudgetStore) Release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `DELETE FROM budget_entries WHERE id IN (?` + strings.Repeat(",?", len(ids)-1) + `)` // #nosec G202 -- only placeholders are concatenated
	if _, err := s.d.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("sqlite: release budget: %w", err)
	}
	return nil
}

// Prune implements policy.BudgetStore.
func (s *BudgetStore) Prune(ctx context.Context, before time.Time) error {
	if _, err := s.d.db.ExecContext(ctx, `DELETE FROM budget_entries WHERE at < ?`, before.UnixNano()); err != nil {
		return fmt.Errorf("sqlite: prune budgets: %w", err)
	}
	return nil
}

var _ policy.BudgetStore = (*BudgetStore)(nil)
