package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/store"
)

// IdemStore implements idem.Store on the database. Each method is one
// statement (a Claim that loses, two), atomic across replicas: a claim is
// an INSERT ... ON CONFLICT DO UPDATE whose update applies only to an
// expired record, so of two replicas claiming one key at once exactly one
// stores its record (the other's statement waits for the first to commit,
// then finds a fresh record and leaves it).
type IdemStore struct{ d *DB }

// Idempotency returns the database's idempotency store.
func (d *DB) Idempotency() *IdemStore { return &IdemStore{d: d} }

const idemCols = `scope, key, fingerprint, client_order_id, state, owner, created_at, updated_at,
	status, header, body, body_dropped, venue_order_id`

// idemSet is the update of every column but the key from $3..$13.
const idemSet = `fingerprint = $3, client_order_id = $4, state = $5, owner = $6, created_at = $7, updated_at = $8,
	status = $9, header = $10, body = $11, body_dropped = $12, venue_order_id = $13`

// The idempotency store's statements.
const (
	qIdemGet = `SELECT ` + idemCols + ` FROM idempotency WHERE scope = $1 AND key = $2`
	// qIdemClaim stores the record unless one created at or after $14 is
	// stored (it locks that one, so that it stays as read until the
	// transaction ends); it returns a row if it stored.
	qIdemClaim = `INSERT INTO idempotency (` + idemCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, client_order_id = excluded.client_order_id,
			state = excluded.state, owner = excluded.owner, created_at = excluded.created_at, updated_at = excluded.updated_at,
			status = excluded.status, header = excluded.header, body = excluded.body, body_dropped = excluded.body_dropped,
			venue_order_id = excluded.venue_order_id
		WHERE idempotency.created_at < $14
		RETURNING true`
	// qIdemSwap replaces the record held by owner $14 and tells whether
	// it did and whether the key is stored at all.
	qIdemSwap = `WITH u AS (UPDATE idempotency SET ` + idemSet + ` WHERE scope = $1 AND key = $2 AND owner = $14 RETURNING 1)
		SELECT (SELECT count(*) FROM u), EXISTS (SELECT 1 FROM idempotency WHERE scope = $1 AND key = $2)`
)

// idemNano is t in Unix nanoseconds, 0 for the zero time (as in
// store/sqlite).
func idemNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func idemTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// idemRow is rec's column values, in idemCols order.
func idemRow(rec idem.Record) ([]any, error) {
	hj := []byte("{}")
	if len(rec.Replay.Header) > 0 {
		var err error
		if hj, err = json.Marshal(rec.Replay.Header); err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
	}
	dropped := 0
	if rec.Replay.BodyDropped {
		dropped = 1
	}
	fp := rec.Fingerprint
	if fp == nil {
		fp = []byte{}
	}
	return []any{rec.Scope, rec.Key, fp, rec.ClientOrderID, string(rec.State), rec.Owner,
		idemNano(rec.Created), idemNano(rec.Updated), rec.Replay.Status, string(hj), rec.Replay.Body, dropped,
		rec.Replay.VenueOrderID}, nil
}

func scanIdem(row pgx.Row) (idem.Record, error) {
	var (
		rec              idem.Record
		state, hj        string
		created, updated int64
		status, dropped  int32
		body             []byte
	)
	err := row.Scan(&rec.Scope, &rec.Key, &rec.Fingerprint, &rec.ClientOrderID, &state, &rec.Owner, &created, &updated,
		&status, &hj, &body, &dropped, &rec.Replay.VenueOrderID)
	if err != nil {
		return idem.Record{}, err
	}
	rec.State = idem.State(state)
	rec.Created, rec.Updated = idemTime(created), idemTime(updated)
	if err := json.Unmarshal([]byte(hj), &rec.Replay.Header); err != nil {
		return idem.Record{}, fmt.Errorf("header: %w", err)
	}
	rec.Replay.Status = int(status)
	rec.Replay.Body = body
	rec.Replay.BodyDropped = dropped != 0
	rec.Replay.ClientOrderID = rec.ClientOrderID
	return rec, nil
}

// Get implements idem.Store.
func (s *IdemStore) Get(ctx context.Context, scope, key string) (idem.Record, error) {
	rec, err := scanIdem(s.d.pool.QueryRow(ctx, qIdemGet, scope, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return idem.Record{}, fmt.Errorf("postgres: idempotency key: %w", store.ErrNotFound)
	}
	if err != nil {
		return idem.Record{}, fmt.Errorf("postgres: idempotency key: %w", err)
	}
	return rec, nil
}

// claimTries bounds Claim's attempts when the record it lost to is gone
// before it could be read (deleted or pruned in between).
const claimTries = 4

// Claim implements idem.Store.
func (s *IdemStore) Claim(ctx context.Context, rec idem.Record, notBefore time.Time) (idem.Record, bool, error) {
	args, err := idemRow(rec)
	if err != nil {
		return idem.Record{}, false, fmt.Errorf("postgres: claim idempotency key: %w", err)
	}
	args = append(args, idemNano(notBefore))
	for range claimTries {
		var claimed bool
		err := s.d.pool.QueryRow(ctx, qIdemClaim, args...).Scan(&claimed)
		if err == nil {
			return rec, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return idem.Record{}, false, fmt.Errorf("postgres: claim idempotency key: %w", err)
		}
		// A fresh record is stored: its writer has committed (the INSERT
		// waited for it), so a new statement reads it, unless it has gone
		// since, and then the key is claimed again.
		stored, err := scanIdem(s.d.pool.QueryRow(ctx, qIdemGet, rec.Scope, rec.Key))
		if err == nil {
			return stored, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return idem.Record{}, false, fmt.Errorf("postgres: claim idempotency key: %w", err)
		}
	}
	return idem.Record{}, false, fmt.Errorf("postgres: claim idempotency key: %w", store.ErrConflict)
}

// Swap implements idem.Store.
func (s *IdemStore) Swap(ctx context.Context, rec idem.Record, owner string) error {
	args, err := idemRow(rec)
	if err != nil {
		return fmt.Errorf("postgres: update idempotency key: %w", err)
	}
	var (
		n      int64
		exists bool
	)
	if err := s.d.pool.QueryRow(ctx, qIdemSwap, append(args, owner)...).Scan(&n, &exists); err != nil {
		return fmt.Errorf("postgres: update idempotency key: %w", err)
	}
	switch {
	case n == 1:
		return nil
	case !exists:
		return fmt.Errorf("postgres: update idempotency key: %w", store.ErrNotFound)
	default:
		return fmt.Errorf("postgres: update idempotency key: %w", store.ErrConflict)
	}
}

// swapLaterTimeout bounds a SwapLater's write.
const swapLaterTimeout = 10 * time.Second

// SwapLater implements idem.LaterStore: Swap on a goroutine of its own.
// PostgreSQL groups concurrent commits itself, so there is no queue to
// join; done is called with Swap's result.
func (s *IdemStore) SwapLater(rec idem.Record, owner string, done func(error)) error {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), swapLaterTimeout)
		defer cancel()
		done(s.Swap(ctx, rec, owner))
	}()
	return nil
}

// Delete implements idem.Store.
func (s *IdemStore) Delete(ctx context.Context, scope, key, owner string, before time.Time) (int64, error) {
	var (
		q    string
		args []any
	)
	if owner != "" {
		q, args = `DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND owner = $3`, []any{scope, key, owner}
	} else {
		q, args = `DELETE FROM idempotency WHERE created_at < $1`, []any{idemNano(before)}
	}
	tag, err := s.d.pool.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

var _ idem.LaterStore = (*IdemStore)(nil)
