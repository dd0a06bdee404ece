package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/store"
)

// IdemStore implements idem.Store on the database.
type IdemStore struct{ d *DB }

// Idempotency returns the database's idempotency store.
func (d *DB) Idempotency() *IdemStore { return &IdemStore{d: d} }

const idemCols = `scope, key, fingerprint, client_order_id, state, owner, created_at, updated_at,
	status, header, body, body_dropped, venue_order_id`

// The idempotency store's statements (prepared in Open). A key's answer
// (state done) is a row of idempotency_answers when one matches the key's
// rowid and owner (migration 0010); it overrides the key row's own
// columns.
const (
	qIdemGet = `SELECT i.scope, i.key, i.fingerprint, i.client_order_id,
		CASE WHEN a.claim IS NULL THEN i.state ELSE 'done' END, i.owner, i.created_at,
		coalesce(a.updated_at, i.updated_at), coalesce(a.status, i.status), coalesce(a.header, i.header),
		CASE WHEN a.claim IS NULL THEN i.body ELSE a.body END, coalesce(a.body_dropped, i.body_dropped),
		coalesce(a.venue_order_id, i.venue_order_id)
		FROM idempotency i LEFT JOIN idempotency_answers a ON a.claim = i.rowid AND a.owner = i.owner
		WHERE i.scope = ? AND i.key = ?`
	qIdemInsert = `INSERT INTO idempotency (` + idemCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (scope, key) DO NOTHING`
	qIdemReplace = `UPDATE idempotency SET fingerprint = ?3, client_order_id = ?4, state = ?5,
		owner = ?6, created_at = ?7, updated_at = ?8, status = ?9, header = ?10, body = ?11, body_dropped = ?12,
		venue_order_id = ?13 WHERE scope = ?1 AND key = ?2 AND created_at < ?14 RETURNING rowid`
	qIdemSwap = `UPDATE idempotency SET fingerprint = ?3, client_order_id = ?4, state = ?5,
		owner = ?6, created_at = ?7, updated_at = ?8, status = ?9, header = ?10, body = ?11, body_dropped = ?12,
		venue_order_id = ?13 WHERE scope = ?1 AND key = ?2 AND owner = ?14 RETURNING rowid`
	// qIdemAnswer appends the answer of a pending key still held by its
	// owner with the same order (?1 scope, ?2 key, ?3 owner, ?4
	// fingerprint, ?5 client order id, ?6 created): the Done of a ticket.
	qIdemAnswer = `INSERT INTO idempotency_answers (claim, owner, updated_at, status, header, body, body_dropped, venue_order_id)
		SELECT rowid, owner, ?7, ?8, ?9, ?10, ?11, ?12 FROM idempotency
		WHERE scope = ?1 AND key = ?2 AND owner = ?3 AND fingerprint = ?4 AND client_order_id = ?5 AND created_at = ?6
			AND state != 'done'
		ON CONFLICT (claim) DO NOTHING`
	// qIdemAnswerAt appends the answer of the claim with row id ?1 (known
	// from the claim this writer stored: claimRows).
	qIdemAnswerAt = `INSERT INTO idempotency_answers (claim, owner, updated_at, status, header, body, body_dropped, venue_order_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (claim) DO NOTHING`
	qIdemForgetAnswer = `DELETE FROM idempotency_answers WHERE claim = ?`
	qIdemExists       = `SELECT 1 FROM idempotency WHERE scope = ? AND key = ?`
	qIdemDeleteOwned  = `DELETE FROM idempotency WHERE scope = ? AND key = ? AND owner = ? RETURNING rowid`
)

// headerJSON encodes h as a JSON object of string arrays, keys sorted
// (what encoding/json makes of an http.Header, without its reflection).
func headerJSON(h http.Header) string {
	if len(h) == 0 {
		return "{}"
	}
	keys := slices.Sorted(maps.Keys(h))
	b := make([]byte, 0, 64)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		if h[k] == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, v := range h[k] {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v)
		}
		b = append(b, ']')
	}
	return string(append(b, '}'))
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced (as encoding/json does).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// idemRow is rec's column values, in idemCols order.
func idemRow(rec idem.Record) ([]any, error) {
	hj := headerJSON(rec.Replay.Header)
	dropped := 0
	if rec.Replay.BodyDropped {
		dropped = 1
	}
	fp := rec.Fingerprint
	if fp == nil {
		fp = []byte{}
	}
	return []any{rec.Scope, rec.Key, fp, rec.ClientOrderID, string(rec.State), rec.Owner,
		nanoOf(rec.Created), nanoOf(rec.Updated), rec.Replay.Status, hj, rec.Replay.Body, dropped,
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
	res, err := d.exec(ctx, tx, qIdemInsert, args...)
	if err != nil {
		return idem.Record{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return idem.Record{}, false, err
	} else if n == 1 {
		if id, err := res.LastInsertId(); err == nil {
			d.claims.stored(rec, id)
		}
		return rec, true, nil
	}
	// The key is stored: replace it if it has expired (the old answer
	// goes with it).
	var claim int64
	err = d.queryRow(ctx, tx, qIdemReplace, append(args, nanoOf(notBefore))...).Scan(&claim)
	switch {
	case err == nil:
		if _, err := d.exec(ctx, tx, qIdemForgetAnswer, claim); err != nil {
			return idem.Record{}, false, err
		}
		d.claims.stored(rec, claim)
		return rec, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return idem.Record{}, false, err
	}
	stored, err := scanIdem(d.queryRow(ctx, tx, qIdemGet, rec.Scope, rec.Key))
	if err != nil {
		return idem.Record{}, false, err
	}
	return stored, false, nil
}

// Swap implements idem.Store as one direct write of the database's group
// commit. A ticket's answer (the key still pending under the same owner
// and order, now done) is appended to idempotency_answers; any other
// change rewrites the key's row.
func (s *IdemStore) Swap(ctx context.Context, rec idem.Record, owner string) error {
	fn, err := s.swap(rec, owner)
	if err == nil {
		err = s.d.writeDirect(ctx, fn)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update idempotency key: %w", err)
	}
	return nil
}

// SwapLater implements idem.LaterStore: Swap queued without waiting; it
// does not end a batch's wait for more writes (the audit log's linger).
func (s *IdemStore) SwapLater(rec idem.Record, owner string, done func(error)) error {
	fn, err := s.swap(rec, owner)
	if err != nil {
		return fmt.Errorf("sqlite: update idempotency key: %w", err)
	}
	return s.d.writeAsync(fn, func(err error) {
		if err != nil {
			err = fmt.Errorf("sqlite: update idempotency key: %w", unrefuse(err))
		}
		done(err)
	})
}

// swap is Swap's write.
func (s *IdemStore) swap(rec idem.Record, owner string) (txFunc, error) {
	args, err := idemRow(rec)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		if rec.State == idem.StateDone && rec.Owner == owner {
			// args: scope, key, fingerprint, coid, state, owner, created,
			// updated, status, header, body, dropped, venue order id.
			var (
				res sql.Result
				err error
			)
			if id, ok := s.d.claims.take(rec); ok {
				// This writer stored the claim and nothing changed it
				// since: no need to look the key up.
				res, err = s.d.exec(ctx, tx, qIdemAnswerAt, id, owner, args[7], args[8], args[9], args[10], args[11], args[12])
			} else {
				res, err = s.d.exec(ctx, tx, qIdemAnswer, args[0], args[1], owner, args[2], args[3], args[6],
					args[7], args[8], args[9], args[10], args[11], args[12])
			}
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 1 {
				return err
			}
		}
		s.d.claims.forget(rec.Scope, rec.Key)
		var claim int64
		err := s.d.queryRow(ctx, tx, qIdemSwap, append(args, owner)...).Scan(&claim)
		if err == nil {
			_, err = s.d.exec(ctx, tx, qIdemForgetAnswer, claim)
			return err
		}
		if !errors.Is(err, sql.ErrNoRows) {
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
	}, nil
}

// Delete implements idem.Store as one direct write of the database's group
// commit.
func (s *IdemStore) Delete(ctx context.Context, scope, key, owner string, before time.Time) (int64, error) {
	var n int64
	err := s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if owner != "" {
			s.d.claims.forget(scope, key)
			rows, err := s.d.query(ctx, tx, qIdemDeleteOwned, scope, key, owner)
			if err != nil {
				return err
			}
			var claims []int64
			for rows.Next() {
				var c int64
				if err := rows.Scan(&c); err != nil {
					_ = rows.Close()
					return err
				}
				claims = append(claims, c)
			}
			if err := rows.Close(); err != nil {
				return err
			}
			for _, c := range claims {
				if _, err := s.d.exec(ctx, tx, qIdemForgetAnswer, c); err != nil {
					return err
				}
			}
			n = int64(len(claims))
			return nil
		}
		s.d.claims.clear()
		b := nanoOf(before)
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_answers
			WHERE claim IN (SELECT rowid FROM idempotency WHERE created_at < ?)`, b); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, b)
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

// claimRows is the writer's memory of the claims it stored and that
// nothing changed since: key → owner, fingerprint, client order id,
// created time and row id. A ticket's answer then goes straight to
// idempotency_answers without looking its key up (a random read of the
// key index). Writer-owned; as a participant it forgets what a rolled-back
// batch added and everything when another connection wrote.
type claimRows struct {
	rows  map[claimKeyOf]claimRow
	added []claimKeyOf // in the open batch
}

type claimKeyOf struct{ scope, key string }

type claimRow struct {
	owner, coid string
	fp          string
	created     int64
	id          int64
}

// maxClaimRows bounds claimRows (claims live from an order's ledger write
// to its answer); beyond it the memory starts afresh.
const maxClaimRows = 1 << 16

func newClaimRows() *claimRows { return &claimRows{rows: map[claimKeyOf]claimRow{}} }

func (c *claimRows) stored(rec idem.Record, id int64) {
	if len(c.rows) >= maxClaimRows {
		clear(c.rows)
	}
	k := claimKeyOf{rec.Scope, rec.Key}
	c.rows[k] = claimRow{owner: rec.Owner, coid: rec.ClientOrderID, fp: string(rec.Fingerprint), created: nanoOf(rec.Created), id: id}
	c.added = append(c.added, k)
}

// take returns the row id of rec's claim if this writer stored it for
// rec's owner and order and nothing changed it since, and forgets it.
func (c *claimRows) take(rec idem.Record) (int64, bool) {
	k := claimKeyOf{rec.Scope, rec.Key}
	r, ok := c.rows[k]
	if !ok {
		return 0, false
	}
	delete(c.rows, k)
	if r.owner != rec.Owner || r.coid != rec.ClientOrderID || r.fp != string(rec.Fingerprint) || r.created != nanoOf(rec.Created) {
		return 0, false
	}
	return r.id, true
}

func (c *claimRows) forget(scope, key string) { delete(c.rows, claimKeyOf{scope, key}) }

func (c *claimRows) clear() { clear(c.rows) }

func (c *claimRows) begin(_ context.Context, _ *sql.Tx, external bool) error {
	if external {
		c.clear()
	}
	return nil
}

func (c *claimRows) flush(context.Context, *sql.Tx) error { return nil }

func (c *claimRows) end(err error, _ time.Duration) {
	if err != nil {
		for _, k := range c.added {
			delete(c.rows, k)
		}
	}
	c.added = c.added[:0]
}

var (
	_ idem.LaterStore = (*IdemStore)(nil)
	_ participant     = (*claimRows)(nil)
)
