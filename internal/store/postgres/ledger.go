package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keystile/keystile/internal/ledger"
)

// Ledger implements ledger.Store on the database: a write request's budget
// reservation, idempotency claim and intent record (in the audit log kept
// in the database) are one transaction. The budget keys are locked first
// (budget.go), so the check sees every reservation committed before and a
// limit holds across replicas; the claim is the idempotency store's
// INSERT ... ON CONFLICT, so a key has one claim. A transaction whose
// COMMIT got no answer is looked up by its transaction id before Open
// returns: Open never reports a failure for a write that is stored, nor
// success for one that is not.
//
// Locks are taken in one order by every writer: budget keys (advisory,
// ascending), then the key's row, then whatever the audit log locks to
// append; releases and prunes lock budget keys before rows too. Writes
// against one budget run one after another, each holding the budget's
// lock through its COMMIT, so a busy budget admits about one order per
// WAL flush across all replicas; writes against different budgets
// overlap and share flushes.
type Ledger struct{ d *DB }

// Ledger returns the database's ledger. Writes with an intent record need
// the audit log to be open in the database.
func (d *DB) Ledger() *Ledger { return &Ledger{d: d} }

// Open implements ledger.Store.
func (l *Ledger) Open(ctx context.Context, w *ledger.Write) error {
	var log intentLog
	if w.Intent != nil {
		if log = l.d.intentLog(); log == nil {
			return ledger.ErrNoAuditLog
		}
	}
	if w.Budget != nil {
		if err := checkAmount(w.Budget.Amount, w.Budget.Claims); err != nil {
			return err
		}
		w.Budget.IDs = nil
	}
	var (
		ids   []int64
		after func(committed bool)
	)
	err := l.d.inTxChecked(ctx, func(tx pgx.Tx, xid *int64) error {
		// One round trip: the transaction id, the reservation (locks,
		// sums, entries) and the claim; the refusals are decided after,
		// in order (budget, then key), and roll back what was written.
		b := &pgx.Batch{}
		b.Queue(qTxID)
		var r *reservation
		if w.Budget != nil {
			r = &reservation{atN: clampNano(w.Budget.At), amount: w.Budget.Amount, claims: w.Budget.Claims}
			r.queue(b)
		}
		if w.Key != nil {
			args, err := idemRow(w.Key.Record)
			if err != nil {
				return fmt.Errorf("claim idempotency key: %w", err)
			}
			b.Queue(qIdemClaim, append(args, idemNano(w.Key.NotBefore))...)
		}
		br := tx.SendBatch(ctx, b)
		claimed, err := readLedgerBatch(br, xid, r, w.Key != nil)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if r != nil {
			if err := r.check(); err != nil {
				return err
			}
		}
		if w.Key != nil && !claimed {
			// The record the claim lost to is locked by the claim's
			// statement: it is read as it stood.
			stored, err := scanIdem(tx.QueryRow(ctx, qIdemGet, w.Key.Record.Scope, w.Key.Record.Key))
			if err != nil {
				return fmt.Errorf("read the stored idempotency key: %w", err)
			}
			w.Key.Stored = stored
			return ledger.ErrKeyTaken
		}
		if r != nil {
			ids = r.ids
		}
		if log != nil {
			var err error
			after, err = log.appendIntent(ctx, tx, *w.Intent)
			if err != nil {
				return fmt.Errorf("intent record: %w", err)
			}
		}
		return nil
	})
	if after != nil {
		after(err == nil)
	}
	if err != nil {
		return fmt.Errorf("postgres: ledger: %w", err)
	}
	if w.Budget != nil {
		w.Budget.IDs = ids
	}
	return nil
}

// readLedgerBatch reads the results of Open's batch: the transaction id
// into xid, the reservation's into r, and whether the key was claimed.
func readLedgerBatch(br pgx.BatchResults, xid *int64, r *reservation, key bool) (claimed bool, err error) {
	if err := br.QueryRow().Scan(xid); err != nil {
		return false, err
	}
	if r != nil {
		if err := r.read(br); err != nil {
			return false, err
		}
	}
	if !key {
		return false, nil
	}
	err = br.QueryRow().Scan(&claimed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("claim idempotency key: %w", err)
	}
	return claimed, nil
}

const qTxID = `SELECT txid_current()`

// outcomeTimeout bounds the look-up of a transaction whose COMMIT got no
// answer.
const outcomeTimeout = 30 * time.Second

// inTxChecked runs fn in one transaction and commits it if fn returns
// nil. fn sets *xid to the transaction id (qTxID) if it can read it in a
// round trip of its own; otherwise it is read before the commit. If the
// COMMIT's answer is lost (the connection broke, ctx ended while it was
// in flight), inTxChecked asks the server, on another connection,
// whether the transaction committed, and answers accordingly.
func (d *DB) inTxChecked(ctx context.Context, fn func(tx pgx.Tx, xid *int64) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return err
	}
	var xid int64
	if err := fn(tx, &xid); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if xid == 0 {
		if err := tx.QueryRow(ctx, qTxID).Scan(&xid); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
	}
	cerr := tx.Commit(ctx)
	if cerr == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(cerr, &pgErr) {
		// The server answered: it refused the commit.
		return cerr
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	committed, err := d.txCommitted(lctx, xid)
	if err != nil {
		return fmt.Errorf("commit: %w; its outcome is unknown: %w", cerr, err)
	}
	if committed {
		return nil
	}
	return fmt.Errorf("commit: %w", cerr)
}

// txCommitted waits for transaction xid to end and reports whether it
// committed. It asks again after a failed look-up: the break that lost
// the COMMIT's answer may have taken the pool's idle connections too.
func (d *DB) txCommitted(ctx context.Context, xid int64) (bool, error) {
	var lastErr error
	for {
		var st *string
		err := d.pool.QueryRow(ctx, `SELECT txid_status($1)`, xid).Scan(&st)
		switch {
		case err != nil:
			lastErr = err
		case st == nil:
			return false, errors.New("the transaction is too old to look up")
		case *st == "committed":
			return true, nil
		case *st == "aborted":
			return false, nil
		}
		// In progress (the server has not finished the COMMIT, or not
		// seen the connection go), or the look-up failed.
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return false, fmt.Errorf("%w (last look-up: %w)", ctx.Err(), lastErr)
			}
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var _ ledger.Store = (*Ledger)(nil)
