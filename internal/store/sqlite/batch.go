package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit. The order path's writes (an order's ledger entry, its
// settlement, the audit records of every request) go to one writer
// goroutine, which runs the queued ones in a single transaction on its own
// connection and commits them with a single fsync (synchronous=FULL
// stays). The writes still happen one after another, in queue order, and
// each sees the ones before it: a budget limit holds exactly and the audit
// chain is sealed in commit order.
//
// A write is one of two kinds:
//   - a savepoint write (batch) runs inside its own savepoint: an error
//     rolls back its own changes only;
//   - a direct write (writeDirect) runs without one, for writes that check
//     before they change anything: a refusal (refuse) has written nothing
//     and the batch goes on; any other error ends the whole transaction
//     (rolled back; the other writes are answered or run again in a fresh
//     one). A savepoint costs three statements, more than most order-path
//     writes themselves.
//
// Writes may also be queued without waiting (writeAsync: audit outcome
// records); a batch of only those may linger for more (Options of the
// audit log) so that reads do not cost a commit each.
//
// Participants (the budget cache, the audit chain) are told when a batch's
// transaction begins, before it commits and how it ended, so that state
// kept in memory moves with the transaction: it is put back when the
// transaction does not commit, and reloaded when another connection has
// changed the database since this writer's last commit (PRAGMA
// data_version).

const (
	// maxBatch bounds the writes committed together.
	maxBatch = 256
	// maxAsync bounds the writes queued without a waiter; beyond it
	// writeAsync refuses (the audit log counts a dropped record).
	maxAsync = 16384
)

// errClosed is returned by batch after Close.
var errClosed = errors.New("sqlite: database is closed")

// errQueueFull is returned by writeAsync when maxAsync writes wait.
var errQueueFull = errors.New("sqlite: write queue full")

// A call's state: queued until the writer takes it or its caller gives up
// (whichever moves it first wins).
const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// txFunc is one write's work inside the batch's transaction.
type txFunc func(ctx context.Context, tx *sql.Tx) error

// refusal marks a direct write's error that left nothing written.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// refuse is how a direct write reports an answer that wrote nothing (a
// budget exceeded, a key already taken): the batch goes on.
func refuse(err error) error { return &refusal{err: err} }

// call is one queued write.
type call struct {
	ctx    context.Context
	fn     txFunc
	direct bool
	state  atomic.Int32
	done   chan error      // buffered: the writer never blocks on an answer; nil for async calls
	notify func(err error) // async calls: told the outcome on the writer goroutine (may be nil)
}

func (c *call) answer(err error) {
	if c.done != nil {
		c.done <- err
		return
	}
	if c.notify != nil {
		c.notify(err)
	}
}

// participant is state kept in memory alongside the database, owned by
// the writer goroutine.
type participant interface {
	// begin is called once a batch's transaction has begun; external
	// reports that another connection changed the database since this
	// writer's last commit. An error fails the batch.
	begin(ctx context.Context, tx *sql.Tx, external bool) error
	// flush writes what the participant accumulated during the batch,
	// before COMMIT. An error fails the batch.
	flush(ctx context.Context, tx *sql.Tx) error
	// end tells how the batch ended: committed (err nil; commit is how
	// long COMMIT took), or not (nothing of it is stored).
	end(err error, commit time.Duration)
}

// writer is the group-commit queue of a DB.
type writer struct {
	mu     sync.Mutex
	queue  []*call
	async  int // async calls in queue
	closed bool
	wake   chan struct{} // capacity 1: "the queue may be non-empty"
	exited chan struct{} // closed when the writer goroutine returns
	conn   *sql.Conn     // the writer's own connection
	// linger is how long a batch of async calls only may wait for more
	// (set before the first async call; 0: none).
	linger atomic.Int64
	// parts are the participants, registered before their first write.
	partsMu sync.Mutex
	parts   []participant

	dataVersion int64 // writer-owned: PRAGMA data_version after the last batch
	// open is the batch whose transaction is open (writer-owned; read by
	// txStmt to reuse its bound statements).
	open atomic.Pointer[openBatch]

	// Counters for WriterStats, updated once per batch.
	batches, writes, busyNs, commitNs, slow atomic.Int64
}

// slowCommit is the commit time WriterStats counts as slow.
const slowCommit = 3 * time.Millisecond

// WriterStats is the group-commit writer's work since Open: how full its
// batches are and where its time goes. The writer is one goroutine, so
// Busy against wall time is how close it is to its limit.
type WriterStats struct {
	Batches     int64         // batches taken from the queue
	Writes      int64         // writes in them
	Busy        time.Duration // time spent running batches
	Commit      time.Duration // of Busy, in COMMIT (WAL frames and fsync)
	SlowCommits int64         // commits that took over 3 ms
}

// WriterStats returns the writer's counters.
func (d *DB) WriterStats() WriterStats {
	w := &d.w
	return WriterStats{Batches: w.batches.Load(), Writes: w.writes.Load(), Busy: time.Duration(w.busyNs.Load()),
		Commit: time.Duration(w.commitNs.Load()), SlowCommits: w.slow.Load()}
}

func (d *DB) startWriter(ctx context.Context) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: writer connection: %w", err)
	}
	if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&d.w.dataVersion); err != nil {
		_ = conn.Close()
		return fmt.Errorf("sqlite: writer connection: %w", err)
	}
	d.w.conn = conn
	d.w.wake = make(chan struct{}, 1)
	d.w.exited = make(chan struct{})
	go d.writeLoop()
	return nil
}

// stopWriter refuses new writes, lets the writer commit and answer the
// queued ones, and waits for it to return.
func (d *DB) stopWriter() {
	if d.w.exited == nil {
		return // Open failed before starting it
	}
	d.w.mu.Lock()
	d.w.closed = true
	d.w.mu.Unlock()
	d.w.poke()
	<-d.w.exited
	_ = d.w.conn.Close()
}

func (w *writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// addParticipant registers p; it sees every batch from the next one on.
func (d *DB) addParticipant(p participant) {
	d.w.partsMu.Lock()
	d.w.parts = append(d.w.parts, p)
	d.w.partsMu.Unlock()
}

func (d *DB) participants() []participant {
	d.w.partsMu.Lock()
	defer d.w.partsMu.Unlock()
	return d.w.parts
}

// batch runs fn in its own savepoint of a transaction shared with other
// queued writes and returns once that transaction has committed (nil, or
// the commit's error) or fn has failed (fn's error; nothing fn wrote is
// kept).
//
// fn runs on the writer goroutine, after the writes queued before it and in
// the same transaction, so it sees their changes. It must use the ctx and
// tx it is given (never the DB's pool, which would wait for the lock the
// batch holds), and must not keep tx. If the caller's ctx ends while fn is
// still queued, batch returns ctx.Err() and fn never runs; once fn has
// run, batch waits for the commit.
func (d *DB) batch(ctx context.Context, fn txFunc) error { return d.write(ctx, fn, false) }

// writeDirect is batch without a savepoint: fn either refuses (an error
// made with refuse: nothing written, the refusal's cause is returned) or
// any error it returns fails the whole transaction.
func (d *DB) writeDirect(ctx context.Context, fn txFunc) error { return d.write(ctx, fn, true) }

func (d *DB) write(ctx context.Context, fn txFunc, direct bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{ctx: ctx, fn: fn, direct: direct, done: make(chan error, 1)}
	d.w.mu.Lock()
	if d.w.closed {
		d.w.mu.Unlock()
		return errClosed
	}
	d.w.queue = append(d.w.queue, c)
	d.w.mu.Unlock()
	d.w.poke()
	select {
	case err := <-c.done:
		return unrefuse(err)
	case <-ctx.Done():
		if c.state.CompareAndSwap(callQueued, callAbandoned) {
			return ctx.Err()
		}
		// The writer has taken the call: its answer is on the way.
		return unrefuse(<-c.done)
	}
}

// writeAsync queues fn as a direct write without waiting for it. notify,
// if not nil, is told its outcome on the writer goroutine and must not
// block. It fails at once after Close or when maxAsync writes wait.
func (d *DB) writeAsync(fn txFunc, notify func(error)) error {
	c := &call{ctx: context.Background(), fn: fn, direct: true, notify: notify}
	d.w.mu.Lock()
	switch {
	case d.w.closed:
		d.w.mu.Unlock()
		return errClosed
	case d.w.async >= maxAsync:
		d.w.mu.Unlock()
		return errQueueFull
	}
	d.w.queue = append(d.w.queue, c)
	d.w.async++
	d.w.mu.Unlock()
	d.w.poke()
	return nil
}

func unrefuse(err error) error {
	var r *refusal
	if errors.As(err, &r) {
		return r.err
	}
	return err
}

// take removes up to n calls from the head of the queue and reports
// whether any of them has a waiter.
func (w *writer) take(n int) (calls []*call, waited bool) {
	n = min(n, len(w.queue))
	calls = make([]*call, n)
	copy(calls, w.queue)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	for _, c := range calls {
		if c.done == nil {
			w.async--
		} else {
			waited = true
		}
	}
	return calls, waited
}

func (d *DB) writeLoop() {
	defer close(d.w.exited)
	for {
		d.w.mu.Lock()
		for len(d.w.queue) == 0 {
			if d.w.closed {
				d.w.mu.Unlock()
				return
			}
			d.w.mu.Unlock()
			<-d.w.wake
			d.w.mu.Lock()
		}
		calls, waited := d.w.take(maxBatch)
		closed := d.w.closed
		d.w.mu.Unlock()
		if linger := time.Duration(d.w.linger.Load()); !waited && !closed && linger > 0 && len(calls) < maxBatch {
			calls = d.lingerFor(calls, linger)
		}
		d.w.batches.Add(1)
		d.w.writes.Add(int64(len(calls)))
		start := time.Now()
		d.runBatch(calls)
		d.w.busyNs.Add(int64(time.Since(start))) // after the answers: a reader may see it late
	}
}

// lingerFor adds queued calls to a batch of async calls for up to linger,
// until the batch is full, a call with a waiter arrives or the writer is
// closing.
func (d *DB) lingerFor(calls []*call, linger time.Duration) []*call {
	t := time.NewTimer(linger)
	defer t.Stop()
	for len(calls) < maxBatch {
		select {
		case <-d.w.wake:
		case <-t.C:
			return calls
		}
		d.w.mu.Lock()
		more, waited := d.w.take(maxBatch - len(calls))
		closed := d.w.closed
		d.w.mu.Unlock()
		calls = append(calls, more...)
		if waited || closed {
			return calls
		}
	}
	return calls
}

// runBatch runs calls in one transaction and answers each of them.
//
// The batch's statements run under a context that never ends: with a
// deadline, the driver would start a watcher goroutine per statement (a
// third of an order's statement cost). A caller whose write has run waits
// for the commit, never for its own context, so that a committed write is
// never reported as failed; lock waits end after the busy timeout (10 s)
// and the order path's statements are single-row.
func (d *DB) runBatch(calls []*call) {
	ctx := context.Background()
	parts := d.participants()
	var (
		tx  *sql.Tx
		ran []*call // fn succeeded: answered after the commit
	)
	// abort ends the transaction without committing: what ran is told
	// err, and the participants put their state back.
	abort := func(err error) {
		_ = tx.Rollback()
		d.w.open.Store(nil)
		for _, p := range parts {
			p.end(err, 0)
		}
		for _, r := range ran {
			r.answer(err)
		}
	}
	for i, c := range calls {
		if !c.state.CompareAndSwap(callQueued, callTaken) {
			continue // the caller has given up and returned
		}
		if err := c.ctx.Err(); err != nil {
			c.answer(err)
			continue
		}
		if tx == nil {
			var err error
			if tx, err = d.begin(ctx, parts); err != nil {
				err = fmt.Errorf("sqlite: begin batch: %w", err)
				c.answer(err)
				failQueued(calls[i+1:], err)
				return
			}
		}
		fnErr, txErr := d.runCall(ctx, tx, c)
		if txErr != nil {
			// The transaction is gone (SQLite rolls a transaction back
			// on I/O errors, a full disk, interrupts), or a direct
			// write failed half way: nothing of this batch is kept.
			// Answer what ran, run the rest afresh.
			err := fmt.Errorf("sqlite: batch rolled back: %w", txErr)
			abort(err)
			if fnErr != nil {
				c.answer(fnErr)
			} else {
				c.answer(err)
			}
			d.runBatch(calls[i+1:])
			return
		}
		if fnErr != nil {
			c.answer(fnErr) // nothing of it written: the answer is final
			continue
		}
		ran = append(ran, c)
	}
	if tx == nil {
		return
	}
	for _, p := range parts {
		if err := p.flush(ctx, tx); err != nil {
			abort(fmt.Errorf("sqlite: batch rolled back: %w", err))
			return
		}
	}
	start := time.Now()
	err := tx.Commit()
	took := time.Since(start)
	d.w.open.Store(nil)
	d.w.commitNs.Add(int64(took))
	if took > slowCommit {
		d.w.slow.Add(1)
	}
	if err != nil {
		err = fmt.Errorf("sqlite: commit batch: %w", err)
	}
	for _, p := range parts {
		p.end(err, took)
	}
	for _, c := range ran {
		c.answer(err)
	}
}

// openBatch is a batch's transaction and the statements bound to it.
type openBatch struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

// begin starts a batch's transaction on the writer's connection and tells
// the participants, noting whether another connection changed the
// database since the last batch.
func (d *DB) begin(ctx context.Context, parts []participant) (*sql.Tx, error) {
	tx, err := d.w.conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	d.w.open.Store(&openBatch{tx: tx, stmts: map[string]*sql.Stmt{}})
	var v int64
	if err := d.queryRow(ctx, tx, qDataVersion).Scan(&v); err != nil {
		_ = tx.Rollback()
		d.w.open.Store(nil)
		return nil, err
	}
	external := v != d.w.dataVersion
	d.w.dataVersion = v
	for i, p := range parts {
		if err := p.begin(ctx, tx, external); err != nil {
			_ = tx.Rollback()
			d.w.open.Store(nil)
			for _, q := range parts[:i+1] {
				q.end(err, 0)
			}
			return nil, err
		}
	}
	return tx, nil
}

// failQueued answers every call still queued with err; their fns never
// run.
func failQueued(calls []*call, err error) {
	for _, c := range calls {
		if c.state.CompareAndSwap(callQueued, callTaken) {
			c.answer(err)
		}
	}
}

// runCall runs c's fn, in a savepoint unless it is direct. fnErr is what
// the caller is told when nothing of fn is kept; txErr reports that tx no
// longer holds the batch's earlier writes (or a direct write failed half
// way) and must be abandoned.
func (d *DB) runCall(ctx context.Context, tx *sql.Tx, c *call) (fnErr, txErr error) {
	if c.direct {
		err := callFn(ctx, tx, c.fn)
		var r *refusal
		switch {
		case err == nil:
			return nil, nil
		case errors.As(err, &r):
			return err, nil
		default:
			return err, err
		}
	}
	if _, err := d.exec(ctx, tx, qSavepoint); err != nil {
		return nil, err
	}
	fnErr = callFn(ctx, tx, c.fn)
	if fnErr != nil {
		if _, err := d.exec(ctx, tx, qRollbackTo); err != nil {
			return fnErr, err
		}
	}
	// RELEASE fails if SQLite rolled the whole transaction back under fn
	// (the savepoint is gone); a new SAVEPOINT would otherwise silently
	// start a fresh transaction without the earlier writes.
	if _, err := d.exec(ctx, tx, qRelease); err != nil {
		return fnErr, err
	}
	return fnErr, nil
}

const (
	qSavepoint   = `SAVEPOINT batch_call`
	qRollbackTo  = `ROLLBACK TO batch_call`
	qRelease     = `RELEASE batch_call`
	qDataVersion = `PRAGMA data_version`
)

// hotQueries are the statements of the order path, prepared once in Open:
// parsing them for every write cost about a third of the writer's CPU.
func hotQueries() []string {
	return []string{qSavepoint, qRollbackTo, qRelease, qDataVersion,
		qInsertEntry, qSumWindow, qReadTotals, qUpsertTotals3, qUpsertTotal, qDeleteTotal,
		qIdemGet, qIdemInsert, qIdemReplace, qIdemSwap, qIdemAnswer, qIdemAnswerAt, qIdemForgetAnswer, qIdemExists, qIdemDeleteOwned,
		qAuditInsert, qAuditCheckpoint}
}

// prepare prepares hotQueries on the pool. database/sql then prepares each
// again, once, on every connection a transaction uses it on (Tx.StmtContext).
func (d *DB) prepare(ctx context.Context) error {
	d.stmts = make(map[string]*sql.Stmt)
	for _, q := range hotQueries() {
		st, err := d.db.PrepareContext(ctx, q)
		if err != nil {
			d.closeStmts()
			return fmt.Errorf("sqlite: prepare %q: %w", q, err)
		}
		d.stmts[q] = st
	}
	return nil
}

func (d *DB) closeStmts() {
	for _, st := range d.stmts {
		_ = st.Close()
	}
}

// txStmt is q bound to tx: a prepared statement if q is one of
// hotQueries, else nil. In the writer's open batch the bound statement is
// made once per batch (Tx.StmtContext allocates and locks each time);
// elsewhere once per call, and closed with tx.
func (d *DB) txStmt(ctx context.Context, tx *sql.Tx, q string) *sql.Stmt {
	st := d.stmts[q]
	if st == nil {
		return nil
	}
	if b := d.w.open.Load(); b != nil && b.tx == tx {
		// Only the writer goroutine uses its batch's transaction.
		if bs := b.stmts[q]; bs != nil {
			return bs
		}
		bs := tx.StmtContext(ctx, st)
		b.stmts[q] = bs
		return bs
	}
	return tx.StmtContext(ctx, st)
}

// exec is tx.ExecContext through the prepared statement of q if any.
func (d *DB) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := d.txStmt(ctx, tx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// query is tx.QueryContext through the prepared statement of q if any.
func (d *DB) query(ctx context.Context, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	if st := d.txStmt(ctx, tx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, q, args...)
}

// queryRow is tx.QueryRowContext through the prepared statement of q if
// any.
func (d *DB) queryRow(ctx context.Context, tx *sql.Tx, q string, args ...any) *sql.Row {
	if st := d.txStmt(ctx, tx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, q, args...)
}

// callFn runs fn, turning a panic into an error so that one bad write
// cannot stop the writer and strand every other caller.
func callFn(ctx context.Context, tx *sql.Tx, fn txFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sqlite: batch write panicked: %v", r)
		}
	}()
	return fn(ctx, tx)
}
