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
// in the database) are one transaction, shared with the other writes the
// process has queued meanwhile (batch.go: each write in its own savepoint,
// one commit). The budget keys are locked first (budget.go), so the check
// sees every reservation committed before and a limit holds across
// replicas; the claim is the idempotency store's INSERT ... ON CONFLICT,
// so a key has one claim. A transaction whose COMMIT got no answer is
// looked up by its transaction id before Open returns: Open never reports
// a failure for a write that is stored, nor success for one that is not.
//
// Locks are taken in one order by every writer: budget keys (advisory,
// ascending, all of a batch's at once), then the keys' rows (ascending),
// then the audit log's head; releases and prunes lock budget keys before
// rows too. Batches against one budget run one after another, each
// holding the budget's lock through its COMMIT, so a busy budget admits
// about one batch per WAL flush across all replicas.
type Ledger struct{ d *DB }

// Ledger returns the database's ledger. Writes with an intent record need
// the audit log to be open in the database.
func (d *DB) Ledger() *Ledger { return &Ledger{d: d} }

// Open implements ledger.Store. The write joins the process's next batch
// (batch.go): one transaction and one commit for the writes queued
// together. It gives up with ctx's error only while the write waits in
// the queue; once its batch has taken it, Open returns the outcome.
func (l *Ledger) Open(ctx context.Context, w *ledger.Write) error {
	op, err := l.newOp(w)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.d.submitLedger(false, op)
	select {
	case err = <-op.done:
	case <-ctx.Done():
		if op.state.CompareAndSwap(opQueued, opAbandoned) {
			return ctx.Err()
		}
		err = <-op.done
	}
	return op.result(err)
}

// newOp checks w and makes its queued write.
func (l *Ledger) newOp(w *ledger.Write) (*ledgerOp, error) {
	if w.Intent != nil && l.d.intentLog() == nil {
		return nil, ledger.ErrNoAuditLog
	}
	if w.Budget != nil {
		if err := checkAmount(w.Budget.Amount, w.Budget.Claims); err != nil {
			return nil, err
		}
		w.Budget.IDs = nil
	}
	op := &ledgerOp{w: w, done: make(chan error, 1)}
	if w.Key != nil {
		args, err := idemRow(w.Key.Record)
		if err != nil {
			return nil, fmt.Errorf("postgres: ledger: claim idempotency key: %w", err)
		}
		op.claim = append(args, idemNano(w.Key.NotBefore))
	}
	return op, nil
}

// result is Open's answer once op's batch answered err.
func (op *ledgerOp) result(err error) error {
	if err != nil {
		return fmt.Errorf("postgres: ledger: %w", err)
	}
	if op.w.Budget != nil {
		op.w.Budget.IDs = op.ids
	}
	return nil
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
