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

// Group commit. Every order makes several small durable writes (budget
// reservation, idempotency claim, idempotency answer); with one transaction
// each, the orders in flight queue behind one another's fsync. batch hands
// the writes to one writer goroutine instead, which runs the queued ones in
// a single transaction, each inside its own savepoint, and commits them
// with a single fsync (synchronous=FULL stays). The writes still happen one
// after another, in queue order, and each sees the ones before it: a
// budget limit holds exactly as it did with one transaction per write.

const (
	// maxBatch bounds the writes committed together.
	maxBatch = 256
	// batchTimeout bounds one batch's statements. It is what bounds a
	// caller's wait once its write has run: the caller then waits for the
	// commit, never for its own context, so that a committed write is
	// never reported as failed.
	batchTimeout = 30 * time.Second
)

// errClosed is returned by batch after Close.
var errClosed = errors.New("sqlite: database is closed")

// A call's state: queued until the writer takes it or its caller gives up
// (whichever moves it first wins).
const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// call is one queued write.
type call struct {
	ctx   context.Context
	fn    func(ctx context.Context, tx *sql.Tx) error
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on an answer
}

// writer is the group-commit queue of a DB.
type writer struct {
	mu     sync.Mutex
	queue  []*call
	closed bool
	wake   chan struct{} // capacity 1: "the queue may be non-empty"
	exited chan struct{} // closed when the writer goroutine returns

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

func (d *DB) startWriter() {
	d.w.wake = make(chan struct{}, 1)
	d.w.exited = make(chan struct{})
	go d.writeLoop()
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
}

func (w *writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// batch runs fn in a transaction shared with other queued writes and
// returns once that transaction has committed (nil, or the commit's error)
// or fn has failed (fn's error; nothing fn wrote is kept).
//
// fn runs on the writer goroutine, after the writes queued before it and in
// the same transaction, so it sees their changes. It must use the ctx and
// tx it is given (never the DB's pool, which would wait for the lock the
// batch holds), and must not keep tx. If the caller's ctx ends while fn is
// still queued, batch returns ctx.Err() and fn never runs; once fn has
// run, batch waits for the commit (bounded by batchTimeout).
func (d *DB) batch(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{ctx: ctx, fn: fn, done: make(chan error, 1)}
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
		return err
	case <-ctx.Done():
		if c.state.CompareAndSwap(callQueued, callAbandoned) {
			return ctx.Err()
		}
		// The writer has taken the call: its answer is on the way.
		return <-c.done
	}
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
		n := min(len(d.w.queue), maxBatch)
		calls := make([]*call, n)
		copy(calls, d.w.queue)
		rest := copy(d.w.queue, d.w.queue[n:])
		clear(d.w.queue[rest:])
		d.w.queue = d.w.queue[:rest]
		d.w.mu.Unlock()
		d.w.batches.Add(1)
		d.w.writes.Add(int64(n))
		start := time.Now()
		d.runBatch(calls)
		d.w.busyNs.Add(int64(time.Since(start))) // after the answers: a reader may see it late
	}
}

// runBatch runs calls in one transaction and answers each of them.
func (d *DB) runBatch(calls []*call) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	var (
		tx  *sql.Tx
		ran []*call // fn succeeded: answered after the commit
	)
	for i, c := range calls {
		if !c.state.CompareAndSwap(callQueued, callTaken) {
			continue // the caller has given up and returned
		}
		if err := c.ctx.Err(); err != nil {
			c.done <- err
			continue
		}
		if tx == nil {
			var err error
			if tx, err = d.db.BeginTx(ctx, nil); err != nil {
				err = fmt.Errorf("sqlite: begin batch: %w", err)
				c.done <- err
				failQueued(calls[i+1:], err)
				return
			}
		}
		fnErr, txErr := d.runSavepoint(ctx, tx, c.fn)
		if txErr != nil {
			// The transaction is gone (SQLite rolls a transaction back
			// on I/O errors, a full disk, interrupts): nothing of this
			// batch is kept. Answer what ran, run the rest afresh.
			_ = tx.Rollback()
			err := fmt.Errorf("sqlite: batch rolled back: %w", txErr)
			for _, r := range ran {
				r.done <- err
			}
			if fnErr != nil {
				c.done <- fnErr
			} else {
				c.done <- err
			}
			d.runBatch(calls[i+1:])
			return
		}
		if fnErr != nil {
			c.done <- fnErr // nothing of it written: the answer is final
			continue
		}
		ran = append(ran, c)
	}
	if tx == nil {
		return
	}
	start := time.Now()
	err := tx.Commit()
	took := time.Since(start)
	d.w.commitNs.Add(int64(took))
	if took > slowCommit {
		d.w.slow.Add(1)
	}
	if err != nil {
		err = fmt.Errorf("sqlite: commit batch: %w", err)
	}
	for _, c := range ran {
		c.done <- err
	}
}

// failQueued answers every call still queued with err; their fns never
// run.
func failQueued(calls []*call, err error) {
	for _, c := range calls {
		if c.state.CompareAndSwap(callQueued, callTaken) {
			c.done <- err
		}
	}
}

// runSavepoint runs fn inside a savepoint of tx. fnErr is fn's error (its
// changes are rolled back); txErr reports that tx itself no longer holds
// the batch's earlier writes and must be abandoned.
func (d *DB) runSavepoint(ctx context.Context, tx *sql.Tx, fn func(context.Context, *sql.Tx) error) (fnErr, txErr error) {
	if _, err := d.exec(ctx, tx, qSavepoint); err != nil {
		return nil, err
	}
	fnErr = callFn(ctx, tx, fn)
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
	qSavepoint  = `SAVEPOINT batch_call`
	qRollbackTo = `ROLLBACK TO batch_call`
	qRelease    = `RELEASE batch_call`
)

// hotQueries are the statements of the order path, prepared once in Open:
// parsing them for every write cost about a third of the writer's CPU.
func hotQueries() []string {
	return []string{qSavepoint, qRollbackTo, qRelease,
		qInsertEntry, qSumWindow, qReadTotals, qUpsertTotals3, qUpsertTotal, qDeleteTotal,
		qIdemGet, qIdemClaim, qIdemSwap, qIdemExists, qIdemDeleteOwned}
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
// hotQueries, else nil.
func (d *DB) txStmt(ctx context.Context, tx *sql.Tx, q string) *sql.Stmt {
	if st := d.stmts[q]; st != nil {
		return tx.StmtContext(ctx, st)
	}
	return nil
}

// exec is tx.ExecContext through the prepared statement of q if any.
func (d *DB) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := d.txStmt(ctx, tx, q); st != nil {
		defer st.Close()
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
func callFn(ctx context.Context, tx *sql.Tx, fn func(context.Context, *sql.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sqlite: batch write panicked: %v", r)
		}
	}()
	return fn(ctx, tx)
}
