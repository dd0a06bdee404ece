package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
)

// Group commit of the ledger. The ledger writes (Ledger.Open) queued in
// one process are run by one goroutine, a batch at a time, in ONE
// transaction with ONE commit: a busy budget admits a batch of orders per
// WAL flush instead of one. There is no linger: a batch is what queued
// while the one before ran (at most maxLedgerBatch).
//
// A batch's transaction takes a fixed number of round trips, however many
// writes it holds:
//  1. it reads its transaction id (for the look-up of a lost COMMIT
//     answer, inTxChecked), takes the advisory locks of every budget key
//     of every write in one statement, ascending (two batches, of this
//     replica or another, that share keys wait for each other and never
//     deadlock), and sums each budget window the writes claim once. While
//     the batch holds a key's lock nobody else changes its entries, so a
//     window's sum is then its start's plus the batch's own entries in
//     it: the budgets are decided here, in the batch's order, without a
//     statement. A write over a limit writes nothing;
//  2. it claims the keys of the writes that fit, in one pipeline, each in
//     its own savepoint, in ascending key order: two batches claiming the
//     same keys lock their rows in one order. A claim that loses writes
//     nothing (the records claims lost to are read after); a claim that
//     fails is undone alone (ROLLBACK TO its savepoint) and the claims
//     after it sent again;
//  3. it inserts the budget entries of the writes that stayed and adds
//     them to the totals, summed per key and buckets;
//  4. it locks the audit chain's head once and appends the intents of the
//     writes that stayed (intentLog.appendIntents), and commits.
//
// Answers: a refusal that saw nothing of the batch's own writes (budget
// exceeded by what was committed before, a key stored before) stands
// whatever the batch becomes and is answered at once; every other answer
// waits for the outcome of the commit, and if the transaction fails as a
// whole each of those writes gets its error and none of it is stored. A
// write refused for a budget only because a write before it counted that
// then lost its key is not answered: it is run again in the next batch.
//
// Locks are taken in the order every writer takes them: budget keys, then
// idempotency rows (ascending), then the audit head.

// maxLedgerBatch bounds the writes of one batch. Each claim is a
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
	claim []any // the claim's arguments, if w.Key
	state atomic.Int32
	done  chan error // buffered: the batch never waits for the caller

	// Set by the batch; ids is read by the caller after done.
	ids      []int64
	r        *reservation // its reservation, if it fits
	stayed   bool         // its writes are in the batch's transaction
	answer   error        // the answer to give once the batch has ended
	answered bool         // answered already: it stands whatever the batch becomes
	again    bool         // to be run again in the next batch
}

// reset clears what a batch set, before op is queued again.
func (op *ledgerOp) reset() {
	op.ids, op.r, op.stayed, op.answer, op.answered, op.again = nil, nil, false, nil, false, false
}

// answerNow answers op before its batch ends.
func (op *ledgerOp) answerNow(err error) {
	op.answer, op.answered = err, true
	op.done <- err
}

// ledgerQueue is a DB's queue of ledger writes.
type ledgerQueue struct {
	mu      sync.Mutex
	ops     []*ledgerOp
	running bool
}

// submitLedger queues ops (at the front if again) and starts the batch
// goroutine if it is not running.
func (d *DB) submitLedger(again bool, ops ...*ledgerOp) {
	q := &d.ledgerQ
	q.mu.Lock()
	if again {
		q.ops = append(ops, q.ops...)
	} else {
		q.ops = append(q.ops, ops...)
	}
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
		// Let the callers answered by the last batch queue their next
		// writes (a yield, not a wait).
		runtime.Gosched()
		q.mu.Lock()
		if len(q.ops) == 0 {
			q.ops = nil
			q.running = false
			q.mu.Unlock()
			return
		}
		n := min(len(q.ops), maxLedgerBatch)
		ops := slices.Clone(q.ops[:n])
		clear(q.ops[:n])
		q.ops = q.ops[n:]
		q.mu.Unlock()
		d.ledgerBatch(ops)
	}
}

// qRollbackWrite undoes the claim whose savepoint is the innermost.
const qRollbackWrite = `ROLLBACK TO SAVEPOINT w`

// ledgerBatch runs ops in one transaction and answers each (or queues it
// again).
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
	var again []*ledgerOp
	for _, op := range ops {
		switch {
		case op.answered:
		case op.again:
			// Not stored whatever the outcome: it runs afresh.
			op.reset()
			op.state.Store(opQueued)
			again = append(again, op)
		case err != nil:
			op.ids = nil
			op.done <- err
		case op.stayed:
			op.done <- nil
		default:
			if op.answer == nil {
				op.answer = errors.New("ledger batch: write left unanswered") // cannot happen
			}
			op.ids = nil
			op.done <- op.answer
		}
	}
	if len(again) > 0 {
		d.submitLedger(true, again...)
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

// budgetView is a batch's view of its budgets: each window's sum when
// the batch locked its key, and the batch's entries.
type budgetView struct {
	base  map[window]decimal.Decimal
	added map[string][]entryAt // by key
}

type entryAt struct {
	atN    int64
	amount decimal.Decimal
}

// used is the window's sum with the batch's entries.
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

// mixed reports whether the batch has entries on any of claims' keys.
func (v *budgetView) mixed(claims []policy.Claim) bool {
	for _, c := range claims {
		if len(v.added[c.Key]) > 0 {
			return true
		}
	}
	return false
}

// add counts r's entries (one per claim).
func (v *budgetView) add(r *reservation) {
	for _, c := range r.claims {
		v.added[c.Key] = append(v.added[c.Key], entryAt{r.atN, r.amount})
	}
}

// check decides r against the view (setting r.used).
func (v *budgetView) check(r *reservation) error {
	r.used = make([]decimal.Decimal, len(r.claims))
	for i, c := range r.claims {
		r.used[i] = v.used(c)
	}
	return r.check()
}

// runLedgerBatch is a batch's transaction, up to its COMMIT. It returns
// the intent log's after function, if intents were appended.
func runLedgerBatch(ctx context.Context, tx pgx.Tx, xid *int64, ops []*ledgerOp, log intentLog) (func(bool), error) {
	view, err := lockAndSum(ctx, tx, xid, ops)
	if err != nil {
		return nil, err
	}
	// Budgets, in the batch's order, counting every write that fits so
	// far; a refusal that saw none of them is answered now.
	var fit, over []*ledgerOp
	for _, op := range ops {
		w := op.w
		if w.Budget != nil {
			r := &reservation{atN: clampNano(w.Budget.At), amount: w.Budget.Amount, claims: w.Budget.Claims}
			if err := view.check(r); err != nil {
				if view.mixed(r.claims) {
					op.r = r
					over = append(over, op)
				} else {
					op.answerNow(err)
				}
				continue
			}
			op.r = r
		}
		if err := admitIntent(log, w); err != nil {
			op.answer = err
			continue
		}
		if op.r != nil {
			view.add(op.r)
		}
		fit = append(fit, op)
	}
	if err := claimKeys(ctx, tx, fit); err != nil {
		return nil, err
	}
	// What stays: the writes that fit and claimed their keys.
	view.added = map[string][]entryAt{}
	claimed := map[[2]string]bool{}
	var stay []*ledgerOp
	for _, op := range fit {
		if op.answer != nil {
			continue
		}
		op.stayed = true
		stay = append(stay, op)
		if op.r != nil {
			view.add(op.r)
		}
		if k := op.w.Key; k != nil {
			claimed[[2]string{k.Record.Scope, k.Record.Key}] = true
		}
	}
	for _, op := range fit {
		if k := op.w.Key; errors.Is(op.answer, ledger.ErrKeyTaken) && !claimed[[2]string{k.Record.Scope, k.Record.Key}] {
			op.answerNow(op.answer)
		}
	}
	// The refusals that saw the batch's writes, against all of those that
	// stay: still over, they stand (after the commit); under, they were
	// refused for a write that lost its key, and run again.
	for _, op := range over {
		if err := view.check(op.r); err != nil {
			op.answer = err
		} else {
			op.again = true
		}
	}
	if err := reserve(ctx, tx, stay); err != nil {
		return nil, err
	}
	var intents []audit.Event
	for _, op := range stay {
		if op.w.Intent != nil {
			intents = append(intents, *op.w.Intent)
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

// lockAndSum reads the transaction id into xid, locks the budget keys of
// ops and sums their windows.
func lockAndSum(ctx context.Context, tx pgx.Tx, xid *int64, ops []*ledgerOp) (*budgetView, error) {
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
	return view, nil
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

// claimKeys claims the keys of ops, in order, each in a savepoint, in one
// pipeline. A claim that loses is answered ErrKeyTaken (w.Key.Stored
// set), one that fails its error (op.answer): its savepoint is rolled
// back (the server skipped the statements after it) and the claims after
// it sent again. err is the batch's.
func claimKeys(ctx context.Context, tx pgx.Tx, ops []*ledgerOp) error {
	var pending, lost []*ledgerOp
	for _, op := range ops {
		if op.w.Key != nil {
			pending = append(pending, op)
		}
	}
	for len(pending) > 0 {
		b := &pgx.Batch{}
		for _, op := range pending {
			b.Queue(`SAVEPOINT w`)
			b.Queue(qIdemClaim, op.claim...)
		}
		br := tx.SendBatch(ctx, b)
		failed, err := readClaims(br, pending, &lost)
		cerr := br.Close()
		switch {
		case err != nil:
			return err
		case failed < 0 && cerr != nil:
			return cerr
		case failed < 0:
			pending = nil
			continue
		}
		// Without arguments, on the simple protocol: an aborted
		// transaction prepares nothing.
		if _, err := tx.Exec(ctx, qRollbackWrite); err != nil {
			return fmt.Errorf("roll back a claim: %w", err)
		}
		pending = pending[failed+1:]
	}
	if len(lost) == 0 {
		return nil
	}
	// The record a claim lost to is locked by the claim's statement: it
	// is read as it stood.
	b := &pgx.Batch{}
	for _, op := range lost {
		b.Queue(qIdemGet, op.w.Key.Record.Scope, op.w.Key.Record.Key)
	}
	br := tx.SendBatch(ctx, b)
	var err error
	for _, op := range lost {
		if op.w.Key.Stored, err = scanIdem(br.QueryRow()); err != nil {
			err = fmt.Errorf("read the stored idempotency key: %w", err)
			break
		}
		op.answer = ledger.ErrKeyTaken
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// readClaims reads claimKeys' pipeline, adding the writes whose claim
// lost to lost. It returns the index of the write whose claim failed,
// after which the server skipped the rest, or -1; err is the batch's.
func readClaims(br pgx.BatchResults, ops []*ledgerOp, lost *[]*ledgerOp) (failed int, err error) {
	for i, op := range ops {
		if _, err := br.Exec(); err != nil {
			return -1, fmt.Errorf("savepoint: %w", err)
		}
		var claimed bool
		switch err := br.QueryRow().Scan(&claimed); {
		case errors.Is(err, pgx.ErrNoRows):
			*lost = append(*lost, op)
		case err != nil:
			op.answer = fmt.Errorf("claim idempotency key: %w", err)
			return i, nil
		}
	}
	return -1, nil
}

// reserve inserts the budget entries of ops (setting op.ids) and adds
// them to the totals, per key and buckets.
func reserve(ctx context.Context, tx pgx.Tx, ops []*ledgerOp) error {
	b := &pgx.Batch{}
	type sum struct {
		k   bucketsKey
		amt decimal.Decimal
	}
	var sums []sum
	at := map[bucketsKey]int{}
	for _, op := range ops {
		r := op.r
		if r == nil {
			continue
		}
		a := r.amount.String()
		for _, c := range r.claims {
			b.Queue(qInsertEntry, c.Key, r.atN, a)
			if r.amount.IsZero() {
				continue
			}
			// A key claimed twice counts twice, as it has two entries.
			k := bucketsKey{c.Key, [3]int64{bucketOf(0, r.atN), bucketOf(1, r.atN), bucketOf(2, r.atN)}}
			if i, ok := at[k]; ok {
				sums[i].amt = sums[i].amt.Add(r.amount)
			} else {
				at[k] = len(sums)
				sums = append(sums, sum{k, r.amount})
			}
		}
	}
	for _, s := range sums {
		b.Queue(qAddTotals, s.k.key, s.k.b[0], s.k.b[1], s.k.b[2], s.amt.String())
	}
	if b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	err := readReserve(br, ops, len(sums))
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

func readReserve(br pgx.BatchResults, ops []*ledgerOp, sums int) error {
	for _, op := range ops {
		if op.r == nil {
			continue
		}
		op.ids = make([]int64, len(op.r.claims))
		for i := range op.ids {
			if err := br.QueryRow().Scan(&op.ids[i]); err != nil {
				return fmt.Errorf("insert budget entry: %w", err)
			}
		}
	}
	for range sums {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("update budget totals: %w", err)
		}
	}
	return nil
}
