package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/store"
)

// IdemStore implements idem.Store on the database.
type IdemStore struct{ d *DB }

// Idempotency returns the database's idempotency store.
func (d *DB) Idempotency() *IdemStore { return &IdemStore{d: d} }

const idemCols = `scope, key, fingerprint, client_order_id, state, owner, created_at, updated_at,
	status, header, body, body_dropped, venue_order_id`

// The idempotency store's statements (prepared in Open).
const (
	qIdemGet   = `SELECT ` + idemCols + ` FROM idempotency WHERE scope = ? AND key = ?`
	qIdemClaim = `INSERT INTO idempotency (` + idemCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint,
			client_order_id = excluded.client_order_id, state = excluded.state, owner = excluded.owner,
			created_at = excluded.created_at, updated_at = excluded.updated_at, status = excluded.status,
			header = excluded.header, body = excluded.body, body_dropped = excluded.body_dropped,
			venue_order_id = excluded.venue_order_id
		WHERE idempotency.created_at < ?`
	qIdemSwap = `UPDATE idempotency SET fingerprint = ?3, client_order_id = ?4, state = ?5,
		owner = ?6, created_at = ?7, updated_at = ?8, status = ?9, header = ?10, body = ?11, body_dropped = ?12,
		venue_order_id = ?13 WHERE scope = ?1 AND key = ?2 AND owner = ?14`
	qIdemExists      = `SELECT 1 FROM idempotency WHERE scope = ? AND key = ?`
	qIdemDeleteOwned = `DELETE FROM idempotency WHERE scope = ? AND key = ? AND owner = ?`
)

// idemRow is rec's column values, in idemCols order.
func idemRow(rec idem.Record) ([]any, error) {
	h := rec.Replay.Header
	if h == nil {
		h = http.Header{}
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, err
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
		nanoOf(rec.Created), nanoOf(rec.Updated), rec.Replay.Status, string(hj), rec.Replay.Body, dropped,
		rec.Replay.VenueOrderID}, nil
}

func scanIdem(row interface{ Scan(...any) error }) (idem.Record, error) {
	var (
		rec              idem.Record
		state, hj        string
		created, updated int64
		dropped          int
		body             []byte
	)
	err := row.Scan(&rec.Scope, &rec.Key, &rec.Fingerprint, &rec.ClientOrderID, &state, &rec.Owner, &created, &updated,
		&rec.Replay.Status, &hj, &body, &dropped, &rec.Replay.VenueOrderID)
	if err != nil {
		return idem.Record{}, err
	}
	rec.State = idem.State(state)
	rec.Created, rec.Updated = timeOfNano(created), timeOfNano(updated)
	if err := json.Unmarshal([]byte(hj), &rec.Replay.Header); err != nil {
		return idem.Record{}, fmt.Errorf("header: %w", err)
	}
	rec.Replay.Body = body
	rec.Replay.BodyDropped = dropped != 0
	rec.Replay.ClientOrderID = rec.ClientOrderID
	return rec, nil
}

// Get implements idem.Store.
func (s *IdemStore) Get(ctx context.Context, scope, key string) (idem.Record, error) {
	rec, err := scanIdem(s.d.stmts[qIdemGet].QueryRowContext(ctx, scope, key))
	if errors.Is(err, sql.ErrNoRows) {
		return idem.Record{}, fmt.Errorf("sqlite: idempotency key: %w", store.ErrNotFound)
	}
	if err != nil {
		return idem.Record{}, fmt.Errorf("sqlite: idempotency key: %w", err)
	}
	return rec, nil
}

// Claim implements idem.Store as one direct write of the database's group
// commit.
func (s *IdemStore) Claim(ctx context.Context, rec idem.Record, notBefore time.Time) (idem.Record, bool, error) {
	var (
		stored  idem.Record
		claimed bool
	)
	err := s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		stored, claimed, err = s.d.claimKey(ctx, tx, rec, notBefore)
		return err
	})
	if err != nil {
		return idem.Record{}, false, fmt.Errorf("sqlite: claim idempotency key: %w", err)
	}
	return stored, claimed, nil
}

// claimKey stores rec unless a record of its key created at or after
// notBefore exists, on the writer; it returns the record stored under the
// key afterwards and whether it is rec. Not claiming writes nothing.
func (d *DB) claimKey(ctx context.Context, tx *sql.Tx, rec idem.Record, notBefore time.Time) (idem.Record, bool, error) {
	args, err := idemRow(rec)
	if err != nil {
		return idem.Record{}, false, err
	}
	res, err := d.exec(ctx, tx, qIdemClaim, append(args, nanoOf(notBefore))...)
	if err != nil {
		return idem.Record{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return idem.Record{}, false, err
	} else if n == 1 {
		return rec, true, nil
	}
	stored, err := scanIdem(d.queryRow(ctx, tx, qIdemGet, rec.Scope, rec.Key))
	if err != nil {
		return idem.Record{}, false, err
	}
	return stored, false, nil
}

// Swap implements idem.Store as one direct write of the database's group
// commit.
func (s *IdemStore) Swap(ctx context.Context, rec idem.Record, owner string) error {
	args, err := idemRow(rec)
	if err != nil {
		return fmt.Errorf("sqlite: update idempotency key: %w", err)
	}
	err = s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.d.exec(ctx, tx, qIdemSwap, append(args, owner)...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var one int
		err = s.d.queryRow(ctx, tx, qIdemExists, rec.Scope, rec.Key).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return refuse(store.ErrNotFound)
		case err != nil:
			return err
		}
		return refuse(store.ErrConflict)
	})
	if err != nil {
		return fmt.Errorf("sqlite: update idempotency key: %w", err)
	}
	return nil
}

// Delete implements idem.Store as one direct write of the database's group
// commit.
func (s *IdemStore) Delete(ctx context.Context, scope, key, owner string, before time.Time) (int64, error) {
	var n int64
	err := s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var (
			res sql.Result
			err error
		)
		if owner != "" {
			res, err = s.d.exec(ctx, tx, qIdemDeleteOwned, scope, key, owner)
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, nanoOf(before))
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete idempotency keys: %w", err)
	}
	return n, nil
}

var _ idem.Store = (*IdemStore)(nil)
