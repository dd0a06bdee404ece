package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/policy"
)

// TripStore implements killswitch.Store on the database (table
// killswitch_trips, migration 0009). Each call is one transaction
// (BEGIN IMMEDIATE), so processes sharing the file agree on the switch.
type TripStore struct{ d *DB }

// Trips returns the database's kill switch store.
func (d *DB) Trips() *TripStore { return &TripStore{d: d} }

const tripCols = `id, scope, target, rule, actor, reason, engaged_at, cleared_at, cleared_by, clear_reason`

func scanTrip(row interface{ Scan(...any) error }) (killswitch.Trip, error) {
	var t killswitch.Trip
	var scope string
	var engaged int64
	var cleared sql.NullInt64
	if err := row.Scan(&t.ID, &scope, &t.Target, &t.Rule, &t.Actor, &t.Reason, &engaged, &cleared, &t.ClearedBy, &t.ClearReason); err != nil {
		return t, err
	}
	t.Scope, t.EngagedAt = killswitch.Scope(scope), timeOfNano(engaged)
	if cleared.Valid {
		t.ClearedAt = timeOfNano(cleared.Int64)
	}
	return t, nil
}

// Engage implements killswitch.Store.
func (s *TripStore) Engage(ctx context.Context, t killswitch.Trip) (killswitch.Trip, bool, error) {
	var out killswitch.Trip
	created := false
	err := s.d.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO killswitch_trips (scope, target, rule, actor, reason, engaged_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, target) WHERE cleared_at IS NULL DO NOTHING`,
			string(t.Scope), t.Target, t.Rule, t.Actor, t.Reason, nanoOf(t.EngagedAt))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		created = n == 1
		out, err = scanTrip(tx.QueryRowContext(ctx, `SELECT `+tripCols+` FROM killswitch_trips
			WHERE scope = ? AND target = ? AND cleared_at IS NULL`, string(t.Scope), t.Target))
		return err
	})
	if err != nil {
		return killswitch.Trip{}, false, fmt.Errorf("sqlite: engage kill switch: %w", err)
	}
	return out, created, nil
}

// Active implements killswitch.Store.
func (s *TripStore) Active(ctx context.Context) ([]killswitch.Trip, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT `+tripCols+` FROM killswitch_trips WHERE cleared_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read kill switch: %w", err)
	}
	defer rows.Close()
	out := []killswitch.Trip{}
	for rows.Next() {
		t, err := scanTrip(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read kill switch: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read kill switch: %w", err)
	}
	return out, nil
}

// Clear implements killswitch.Store.
func (s *TripStore) Clear(ctx context.Context, f killswitch.Filter, by, reason string, at time.Time) ([]killswitch.Trip, error) {
	out := []killswitch.Trip{}
	err := s.d.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE killswitch_trips SET cleared_at = ?, cleared_by = ?, clear_reason = ?
			WHERE cleared_at IS NULL AND (?4 = '' OR scope = ?4) AND (?5 = '' OR target = ?5) RETURNING `+tripCols,
			nanoOf(at), by, reason, string(f.Scope), f.Target)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanTrip(rows)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: clear kill switch: %w", err)
	}
	return out, nil
}

// LastClear implements killswitch.Store.
func (s *TripStore) LastClear(ctx context.Context, scope killswitch.Scope, target string) (time.Time, error) {
	var n sql.NullInt64
	err := s.d.db.QueryRowContext(ctx, `SELECT MAX(cleared_at) FROM killswitch_trips WHERE scope = ? AND target = ? AND cleared_at IS NOT NULL`,
		string(scope), target).Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("sqlite: read kill switch: %w", err)
	}
	if !n.Valid {
		return time.Time{}, nil
	}
	return timeOfNano(n.Int64), nil
}

// Ledger is the loss guard's ledger (killswitch.Ledger) kept in the
// policy budgets' tables: an amount is a budget entry under its key (the
// keys start with "lossguard/", so no budget shares them), summed with
// the same running totals, written through the same group commit and
// pruned with the budgets (entries older than a day and the longest
// budget window).
type LossLedger struct{ d *DB }

// LossLedger returns the database's loss guard ledger.
func (d *DB) LossLedger() *LossLedger { return &LossLedger{d: d} }

// Add implements killswitch.Ledger.
func (l *LossLedger) Add(ctx context.Context, key string, at time.Time, amount decimal.Decimal) error {
	if amount.IsNegative() {
		return errors.New("sqlite: ledger amount is negative")
	}
	err := l.d.batch(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := l.d.insertEntries(ctx, tx, clampNano(at), amount, []policy.Claim{{Key: key}})
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: ledger add: %w", err)
	}
	return nil
}

// Sum implements killswitch.Ledger: the committed entries of key made at
// or after since.
func (l *LossLedger) Sum(ctx context.Context, key string, since time.Time) (decimal.Decimal, error) {
	tx, err := l.d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("sqlite: ledger sum: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	sum, err := l.d.sumWindow(ctx, tx, key, clampNano(since))
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("sqlite: ledger sum: %w", err)
	}
	return sum, nil
}

var (
	_ killswitch.Store  = (*TripStore)(nil)
	_ killswitch.Ledger = (*LossLedger)(nil)
)
