package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/ledger"
)

// Ledger implements ledger.Store on the database: a write request's budget
// reservation, idempotency claim and intent record (in the audit log kept
// in the database, OpenAuditLog) are one direct write of the group commit,
// so one transaction and one fsync, shared with the other orders in
// flight. The checks run on the writer against its memory of budget
// windows and the key's row, so they see every write committed or queued
// before.
type Ledger struct{ d *DB }

// Ledger returns the database's ledger. Writes with an intent record need
// the audit log to be open in the database (OpenAuditLog).
func (d *DB) Ledger() *Ledger { return &Ledger{d: d} }

// Open implements ledger.Store.
func (l *Ledger) Open(ctx context.Context, w *ledger.Write) error {
	var (
		rec *audit.Record
		log = l.d.auditLog.Load()
	)
	if w.Intent != nil {
		if log == nil {
			return ledger.ErrNoAuditLog
		}
		if log.closed.Load() {
			return audit.ErrClosed
		}
		r := log.rec.Record(*w.Intent, audit.KindIntent)
		rec = &r
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, log.o.IntentTimeout)
		defer cancel()
	}
	if w.Budget != nil {
		if err := checkAmount(w.Budget.Amount, w.Budget.Claims); err != nil {
			return err
		}
		w.Budget.IDs = nil
	}
	err := l.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if w.Budget != nil {
			if err := l.d.checkBudget(ctx, tx, w.Budget.Amount, w.Budget.Claims); err != nil {
				return err
			}
		}
		if w.Key != nil {
			stored, claimed, err := l.d.claimKey(ctx, tx, w.Key.Record, w.Key.NotBefore)
			if err != nil {
				return fmt.Errorf("claim idempotency key: %w", err)
			}
			if !claimed {
				w.Key.Stored = stored
				return refuse(ledger.ErrKeyTaken)
			}
		}
		if w.Budget != nil {
			ids, err := l.d.insertEntries(ctx, tx, clampNano(w.Budget.At), w.Budget.Amount, w.Budget.Claims)
			if err != nil {
				return err
			}
			w.Budget.IDs = ids
		}
		if rec != nil {
			return log.append(ctx, tx, rec, false)
		}
		return nil
	})
	if err != nil {
		if w.Budget != nil {
			w.Budget.IDs = nil
		}
		if rec != nil {
			err = log.waitErr(err)
		}
		return fmt.Errorf("sqlite: ledger: %w", err)
	}
	return nil
}

var _ ledger.Store = (*Ledger)(nil)
