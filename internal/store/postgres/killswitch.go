package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/killswitch"
)

// TripStore implements killswitch.Store on the database (table
// killswitch_trips). Each call is one transaction; the partial unique
// index on active trips makes two replicas engaging one scope at once
// create one trip. Engaging and clearing bump the "killswitch" change
// version in their transaction.
type TripStore struct{ d *DB }

// Trips returns the database's kill switch store.
func (d *DB) Trips() *TripStore { return &TripStore{d: d} }

const tripCols = `id, scope, target, rule, actor, reason, engaged_at, cleared_at, cleared_by, clear_reason`

func scanTrip(row interface{ Scan(...any) error }) (killswitch.Trip, error) {
	var t killswitch.Trip
	var scope string
	var engaged int64
	var cleared *int64
	if err := row.Scan(&t.ID, &scope, &t.Target, &t.Rule, &t.Actor, &t.Reason, &engaged, &cleared, &t.ClearedBy, &t.ClearReason); err != nil {
		return t, err
	}
	t.Scope, t.EngagedAt = killswitch.Scope(scope), fromNanos(engaged)
	if cleared != nil {
		t.ClearedAt = fromNanos(*cleared)
	}
	return t, nil
}

// Engage implements killswitch.Store.
func (s *TripStore) Engage(ctx context.Context, t killswitch.Trip) (killswitch.Trip, bool, error) {
	var out killswitch.Trip
	created := false
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		// On a conflict with an active trip another transaction is
		// inserting, the insert waits for it and then does nothing; the
		// SELECT (a new snapshot under READ COMMITTED) sees that trip.
		tag, err := tx.Exec(ctx, `INSERT INTO killswitch_trips (scope, target, rule, actor, reason, engaged_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, target) WHERE cleared_at IS NULL DO NOTHING`,
			string(t.Scope), t.Target, t.Rule, t.Actor, t.Reason, nanos(t.EngagedAt))
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		out, err = scanTrip(tx.QueryRow(ctx, `SELECT `+tripCols+` FROM killswitch_trips
			WHERE scope = $1 AND target = $2 AND cleared_at IS NULL`, string(t.Scope), t.Target))
		if err != nil {
			return err
		}
		if created {
			return bump(ctx, tx, TopicKillSwitch)
		}
		return nil
	})
	if err != nil {
		return killswitch.Trip{}, false, fmt.Errorf("postgres: engage kill switch: %w", err)
	}
	return out, created, nil
}

// Active implements killswitch.Store.
func (s *TripStore) Active(ctx context.Context) ([]killswitch.Trip, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT `+tripCols+` FROM killswitch_trips WHERE cleared_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read kill switch: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (killswitch.Trip, error) { return scanTrip(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: read kill switch: %w", err)
	}
	return out, nil
}

// Clear implements killswitch.Store.
func (s *TripStore) Clear(ctx context.Context, f killswitch.Filter, by, reason string, at time.Time) ([]killswitch.Trip, error) {
	out := []killswitch.Trip{}
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE killswitch_trips SET cleared_at = $1, cleared_by = $2, clear_reason = $3
			WHERE cleared_at IS NULL AND ($4::text = '' OR scope = $4::text) AND ($5::text = '' OR target = $5::text)
			RETURNING `+tripCols,
			nanos(at), by, reason, string(f.Scope), f.Target)
		if err != nil {
			return err
		}
		out, err = pgx.AppendRows(out, rows, func(r pgx.CollectableRow) (killswitch.Trip, error) { return scanTrip(r) })
		if err != nil {
			return err
		}
		if len(out) > 0 {
			return bump(ctx, tx, TopicKillSwitch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: clear kill switch: %w", err)
	}
	return out, nil
}

// LastClear implements killswitch.Store.
func (s *TripStore) LastClear(ctx context.Context, scope killswitch.Scope, target string) (time.Time, error) {
	var n *int64
	err := s.d.pool.QueryRow(ctx, `SELECT MAX(cleared_at) FROM killswitch_trips WHERE scope = $1 AND target = $2 AND cleared_at IS NOT NULL`,
		string(scope), target).Scan(&n)
	if err != nil {
		return time.Time{}, fmt.Errorf("postgres: read kill switch: %w", err)
	}
	if n == nil {
		return time.Time{}, nil
	}
	return fromNanos(*n), nil
}

// LossLedger is the loss guard's ledger (killswitch.Ledger), in its own
// table (lossguard_entries) with exact NUMERIC amounts summed by the
// server. Entries are kept until Prune removes them.
type LossLedger struct{ d *DB }

// LossLedger returns the database's loss guard ledger.
func (d *DB) LossLedger() *LossLedger { return &LossLedger{d: d} }

// ledgerNano is t in Unix nanoseconds, clamped to ±2^62 so that the
// zero time (and any far date) orders correctly.
func ledgerNano(t time.Time) int64 {
	const lim = int64(1) << 62
	switch {
	case t.Before(time.Unix(0, -lim)):
		return -lim
	case t.After(time.Unix(0, lim)):
		return lim
	}
	return t.UnixNano()
}

// Add implements killswitch.Ledger.
func (l *LossLedger) Add(ctx context.Context, key string, at time.Time, amount decimal.Decimal) error {
	if amount.IsNegative() {
		return errors.New("postgres: ledger amount is negative")
	}
	if _, err := l.d.pool.Exec(ctx, `INSERT INTO lossguard_entries(key, at, amount) VALUES ($1, $2, $3::numeric)`,
		key, ledgerNano(at), amount.String()); err != nil {
		return fmt.Errorf("postgres: ledger add: %w", err)
	}
	return nil
}

// Sum implements killswitch.Ledger: the committed entries of key made at
// or after since.
func (l *LossLedger) Sum(ctx context.Context, key string, since time.Time) (decimal.Decimal, error) {
	var s string
	if err := l.d.pool.QueryRow(ctx, `SELECT COALESCE(SUM(amount), 0)::text FROM lossguard_entries WHERE key = $1 AND at >= $2`,
		key, ledgerNano(since)).Scan(&s); err != nil {
		return decimal.Decimal{}, fmt.Errorf("postgres: ledger sum: %w", err)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("postgres: ledger sum %q: %w", s, err)
	}
	return d, nil
}

// Prune deletes the entries made before before (every loss guard window
// starts after it) and returns how many it deleted.
func (l *LossLedger) Prune(ctx context.Context, before time.Time) (int64, error) {
	tag, err := l.d.pool.Exec(ctx, `DELETE FROM lossguard_entries WHERE at < $1`, ledgerNano(before))
	if err != nil {
		return 0, fmt.Errorf("postgres: ledger prune: %w", err)
	}
	return tag.RowsAffected(), nil
}

var (
	_ killswitch.Store  = (*TripStore)(nil)
	_ killswitch.Ledger = (*LossLedger)(nil)
)
