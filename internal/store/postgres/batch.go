package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
)

// Group commit of the ledger. The ledger writes (Ledger.Open) queued in
// one process are run by one goroutine, a batch at a time, in ONE
// transaction with ONE commit: a busy budget admits a batch of orders per
// WAL flush instead of one. There is no linger: a batch is what queued
// while the one before ran (at most maxLedgerBatch).
//
// A batch's transaction:
//  1. reads its transaction id (the lost-commit look-up, inTxChecked) and
//     takes the advisory locks of every budget key of every write, in one
//     statement, ascending: two batches (of this replica or another) that
//     share keys wait for each other and never deadlock;
//  2. runs the writes, ordered by idempotency key (so that two batches
//     claiming the same keys lock their rows in one order), each in its own
//     savepoint, in one round trip each: reservation, claim, the stored
//     record. A refusal (budget exceeded, key taken) or an error rolls back
//     the write's savepoint only (ROLLBACK TO, sent ahead of the next
//     write's statements). A refusal that saw nothing of the batch's own
//     writes is answered at once: it stands whatever the batch becomes;
//  3. locks the audit chain's head once and appends the intents of the
//     writes that stayed (intentLog.appendIntents);
//  4. commits. The writes that stayed and the refusals that depended on
//     them are answered once the outcome is known: if the transaction fails
//     as a whole, each gets the error and none of it is stored.
//
// A batch takes every lock it needs in the order every writer takes them:
// budget keys, then idempotency rows (ascending), then the audit head.

// maxLedgerBatch bounds the writes of one batch. Each write is a
// subtransaction with an id of its own; PostgreSQL keeps up to 64 of a
// transaction's in shared memory, beyond which every snapshot taken while
// it runs gets slower (subxid overflow).
const maxLedgerBatch = 64

// ledgerBatchTimeout bounds a batch's transaction (its lock waits
// included), before the look-up of a lost COMMIT answer.
const ledgerBatchTimeout = 30 * time.Second

// A queued write's state: queued until the batch takes it or its caller
// gives up, whichever moves it first.
const (
	opQueued int32 = iota
	opTaken
	opAbandoned
)

// ledgerOp is one queued Ledger.Open.
type ledgerOp struct {
	w     *ledger.Write
	state atomic.Int32
	done  chan error // buffered: the batch never waits for the caller

	// Set by the batch (read by the caller after done).
	ids []int64

	// The batch's own.
	claim   []any       // the claim's arguments, if w.Key
	stayed  bool        // its writes are in the batch's transaction
	answer  error       // the answer to give once the batch has ended
	stored  idem.Record // the record a lost claim found
	deferOK bool        // answered already: it stands whatever the batch becomes
}

// ledgerQueue is a DB's queue of ledger writes.
type ledgerQueue struct {
	mu      sync.Mutex
	ops     []*ledgerOp
	running bool
}

// submit queues op and starts the batch goroutine if it is not running.
func (d *DB) submitLedger(op *ledgerOp) {
	q := &d.ledgerQ
	q.mu.Lock()
	q.ops = append(q.ops, op)
	if !q.running {
		q.running = true
		go d.runLedger()
	}
	q.mu.Unlock()
}

// runLedger runs batches until the queue is empty.
func (d *DB) runLedger() {
	q := &d.ledgerQ
	for {
		q.mu.Lock()
		if len(q.ops) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		n := min(len(q.ops), maxLedgerBatch)
		ops := slices.Clone(q.ops[:n])
		clear(q.ops[:n])
		q.ops = q.ops[n:]
		if len(q.ops) == 0 {
			q.ops = nil
		}
		q.mu.Unlock()
		d.ledgerBatch(ops)
	}
}

// qRollbackWrite undoes the current write of a batch.
const qRollbackWrite = `ROLLBACK TO SAVEPOINT w`

// ledgerBatch runs ops in one transaction and answers each.
func (d *DB) ledgerBatch(all []*ledgerOp) {
	ops := all[:0:0]
	for _, op := range all {
		if op.state.CompareAndSwap(opQueued, opTaken) {
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		return
	}
	// Claims in ascending (scope, key) order; writes without a key first.
	slices.SortStableFunc(ops, func(a, b *ledgerOp) int {
		switch {
		case a.w.Key == nil || b.w.Key == nil:
			return cmp.Compare(boolInt(a.w.Key != nil), boolInt(b.w.Key != nil))
		case a.w.Key.Record.Scope != b.w.Key.Record.Scope:
			return cmp.Compare(a.w.Key.Record.Scope, b.w.Key.Record.Scope)
		}
		return cmp.Compare(a.w.Key.Record.Key, b.w.Key.Record.Key)
	})
	log := d.intentLog()
	ctx, cancel := context.WithTimeout(context.Background(), ledgerBatchTimeout)
	defer cancel()
	var after func(committed bool)
	err := d.inTxChecked(ctx, func(tx pgx.Tx, xid *int64) error {
		var err error
		after, err = runLedgerBatch(ctx, tx, xid, ops, log)
		return err
	})
	if after != nil {
		after(err == nil)
	}
	for _, op := range ops {
		switch {
		case op.deferOK:
			// Answered already.
		case err != nil:
			op.ids = nil
			op.done <- err
		default:
			if op.answer == nil && !op.stayed {
				op.answer = errors.New("ledger batch: write not run") // cannot happen
			}
			if op.answer != nil {
				op.ids = nil
			}
			if errors.Is(op.answer, ledger.ErrKeyTaken) {
				op.w.Key.Stored = op.stored
			}
			op.done <- op.answer
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// window is a budget window: a key's entries dated at or after sinceN.
type window struct {
	key    string
	sinceN int64
}

// budgetView is a batch's view of its budgets: each window summed once,
// at the start, under the keys' locks, and the entries of the batch's
// writes that stayed. Nothing else can change the keys' entries while
// the batch holds their locks, so a window's sum is its start's plus the
// batch's entries in it, exactly what the statement would read.
type budgetView struct {
	base  map[window]decimal.Decimal
	added map[string][]entryAt // by key
}

type entryAt struct {
	atN    int64
	amount decimal.Decimal
}

// used is the window's sum now.
func (v *budgetView) used(c policy.Claim) decimal.Decimal {
	wn := window{c.Key, clampNano(c.Since)}
	u := v.base[wn]
	for _, e := range v.added[c.Key] {
		if e.atN >= wn.sinceN {
			u = u.Add(e.amount)
		}
	}
	return u
}

// mixed reports whether the batch has added entries on any of claims' keys.
func (v *budgetView) mixed(claims []policy.Claim) bool {
	for _, c := range claims {
		if len(v.added[c.Key]) > 0 {
			return true
		}
	}
	return false
}

// add counts the entries of a reservation that stayed (one per claim).
func (v *budgetView) add(r *reservation) {
	for _, c := range r.claims {
		v.added[c.Key] = append(v.added[c.Key], entryAt{r.atN, r.amount})
	}
}

// runLedgerBatch is a batch's transaction, up to its COMMIT. It returns
// the intent log's after function, if intents were appended.
func runLedgerBatch(ctx context.Context, tx pgx.Tx, xid *int64, ops []*ledgerOp, log intentLog) (func(bool), error) {
	var (
		keys    []string
		windows []policy.Claim
		seen    = map[window]bool{}
	)
	for _, op := range ops {
		if op.w.Budget == nil {
			continue
		}
		for _, c := range op.w.Budget.Claims {
			keys = append(keys, c.Key)
			if wn := (window{c.Key, clampNano(c.Since)}); !seen[wn] {
				seen[wn] = true
				windows = append(windows, c)
			}
		}
	}
	b := &pgx.Batch{}
	b.Queue(qTxID)
	sums := &reservation{claims: windows}
	if len(keys) > 0 {
		// The sums run after the lock statement has returned, each with
		// a snapshot of its own (READ COMMITTED): they see every
		// reservation committed by the locks' previous holders.
		b.Queue(qLockBudgets, budgetLockClass, lockIDs(keys))
		queueSums(b, windows)
	}
	br := tx.SendBatch(ctx, b)
	err := br.QueryRow().Scan(xid)
	if err == nil && len(keys) > 0 {
		if _, err = br.Exec(); err != nil {
			err = fmt.Errorf("lock budgets: %w", err)
		} else {
			err = sums.readSums(br)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	view := &budgetView{base: map[window]decimal.Decimal{}, added: map[string][]entryAt{}}
	for i, c := range windows {
		view.base[window{c.Key, clampNano(c.Since)}] = sums.used[i]
	}
	// The keys claimed by the batch's writes that stayed: a key-taken
	// refusal that lost to one of them is answered after the commit only.
	claimed := map[[2]string]bool{}
	undo := false
	var intents []audit.Event
	for _, op := range ops {
		w := op.w
		// The budget first (the policy's answer comes first): decided
		// here, it writes nothing when refused.
		var r *reservation
		if w.Budget != nil {
			r = &reservation{atN: clampNano(w.Budget.At), amount: w.Budget.Amount, claims: w.Budget.Claims, summed: true}
			r.used = make([]decimal.Decimal, len(r.claims))
			for i, c := range r.claims {
				r.used[i] = view.used(c)
			}
			if err := r.check(); err != nil {
				op.answer = err
				if !view.mixed(r.claims) {
					op.deferOK = true
					op.done <- err
				}
				continue
			}
		}
		if r != nil || w.Key != nil {
			res, err := runLedgerWrite(ctx, tx, op, r, undo)
			if err != nil {
				return nil, err
			}
			undo = res != nil
			switch {
			case res == nil:
			case errors.Is(res, ledger.ErrKeyTaken):
				op.answer = res
				if !claimed[[2]string{w.Key.Record.Scope, w.Key.Record.Key}] {
					op.deferOK = true
					w.Key.Stored = op.stored
					op.done <- res
				}
				continue
			default:
				op.answer = res
				continue
			}
		}
		if err := admitIntent(log, w); err != nil {
			op.answer = err
			undo = undo || r != nil || w.Key != nil
			continue
		}
		op.stayed = true
		if r != nil {
			view.add(r)
			op.ids = r.ids
		}
		if w.Key != nil {
			claimed[[2]string{w.Key.Record.Scope, w.Key.Record.Key}] = true
		}
		if w.Intent != nil {
			intents = append(intents, *w.Intent)
		}
	}
	if undo {
		if _, err := tx.Exec(ctx, qRollbackWrite); err != nil {
			return nil, fmt.Errorf("roll back a write: %w", err)
		}
	}
	if len(intents) == 0 {
		return nil, nil
	}
	after, err := log.appendIntents(ctx, tx, intents)
	if err != nil {
		return nil, fmt.Errorf("intent records: %w", err)
	}
	return after, nil
}

// admitIntent asks the intent log whether w's intent can be appended.
func admitIntent(log intentLog, w *ledger.Write) error {
	if w.Intent == nil {
		return nil
	}
	if log == nil {
		return ledger.ErrNoAuditLog
	}
	if err := log.checkIntent(*w.Intent); err != nil {
		return fmt.Errorf("intent record: %w", err)
	}
	return nil
}

// runLedgerWrite writes op's reservation r (its budget already checked)
// and claims its key in a savepoint of tx, in one round trip, first
// undoing the write before if undo is set. It returns the write's refusal
// (ErrKeyTaken) or error, after which its savepoint is to be rolled back,
// or nil; err is the batch's error.
func runLedgerWrite(ctx context.Context, tx pgx.Tx, op *ledgerOp, r *reservation, undo bool) (res, err error) {
	w := op.w
	b := &pgx.Batch{}
	if undo {
		b.Queue(qRollbackWrite)
	}
	b.Queue(`SAVEPOINT w`)
	if r != nil {
		r.queue(b)
	}
	if w.Key != nil {
		b.Queue(qIdemClaim, op.claim...)
		// The record the claim lost to is locked by the claim's
		// statement: it is read as it stood.
		b.Queue(qIdemGet, w.Key.Record.Scope, w.Key.Record.Key)
	}
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil && res == nil && cerr != nil {
			res = cerr
		}
	}()
	if undo {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("roll back a write: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	if r != nil {
		if err := r.read(br); err != nil {
			return err, nil
		}
	}
	if w.Key == nil {
		return nil, nil
	}
	var claimed bool
	switch err := br.QueryRow().Scan(&claimed); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("claim idempotency key: %w", err), nil
	}
	if claimed {
		return nil, nil
	}
	stored, err := scanIdem(br.QueryRow())
	if err != nil {
		return fmt.Errorf("read the stored idempotency key: %w", err), nil
	}
	op.stored = stored
	return ledger.ErrKeyTaken, nil
}
