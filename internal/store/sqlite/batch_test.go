package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openBatchDB(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.db")
	d, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if _, err := d.db.Exec(`CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return d, path
}

// holdWriter queues a write that blocks the writer until the returned
// function is called, so that the calls made meanwhile are queued together
// and run as one batch after it.
func holdWriter(t *testing.T, d *DB) (release func(), result <-chan error) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	res := make(chan error, 1)
	go func() {
		res <- d.batch(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			close(started)
			<-gate
			_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES ('hold', 0)`)
			return err
		})
	}()
	<-started
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release, res
}

// waitQueued waits until n calls are queued behind the held writer.
func waitQueued(t *testing.T, d *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.w.mu.Lock()
		q := len(d.w.queue)
		d.w.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func rows(t *testing.T, d *DB) map[string]int {
	t.Helper()
	r, err := d.db.Query(`SELECT k, v FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := map[string]int{}
	for r.Next() {
		var (
			k string
			v int
		)
		if err := r.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		m[k] = v
	}
	return m
}

func insert(k string, v int) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?, ?)`, k, v)
		return err
	}
}

// TestBatchSavepoints: the calls of one batch run in queue order, each
// sees the earlier ones' writes, and a failing call loses only its own.
func TestBatchSavepoints(t *testing.T) {
	d, _ := openBatchDB(t)
	release, held := holdWriter(t, d)
	errBoom := errors.New("boom")
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 4)
	var sawA int
	calls := []struct {
		name string
		fn   func(context.Context, *sql.Tx) error
	}{
		{"a", insert("a", 1)},
		{"b", func(ctx context.Context, tx *sql.Tx) error {
			if err := insert("b", 2)(ctx, tx); err != nil {
				return err
			}
			return errBoom // b's insert must be rolled back
		}},
		{"dup", insert("a", 9)}, // a constraint error: only this call fails
		{"c", func(ctx context.Context, tx *sql.Tx) error {
			if err := tx.QueryRowContext(ctx, `SELECT v FROM t WHERE k = 'a'`).Scan(&sawA); err != nil {
				return err
			}
			return insert("c", 3)(ctx, tx)
		}},
	}
	for i, c := range calls {
		go func() {
			results <- result{c.name, d.batch(context.Background(), c.fn)}
		}()
		waitQueued(t, d, i+1) // keep queue order
	}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	got := map[string]error{}
	for range calls {
		r := <-results
		got[r.name] = r.err
	}
	if got["a"] != nil || got["c"] != nil || !errors.Is(got["b"], errBoom) || got["dup"] == nil {
		t.Fatalf("results: %v", got)
	}
	if sawA != 1 {
		t.Fatalf("c saw a = %d: earlier writes of the batch must be visible", sawA)
	}
	if m := rows(t, d); fmt.Sprint(m) != "map[a:1 c:3 hold:0]" {
		t.Fatalf("rows: %v", m)
	}
}

// TestBatchCancelQueued: a caller whose context ends while its call is
// queued gets ctx.Err() at once, and its fn never runs.
func TestBatchCancelQueued(t *testing.T) {
	d, _ := openBatchDB(t)
	release, held := holdWriter(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{}, 1)
	res := make(chan error, 1)
	go func() {
		res <- d.batch(ctx, func(ctx context.Context, tx *sql.Tx) error {
			ran <- struct{}{}
			return insert("cancelled", 1)(ctx, tx)
		})
	}()
	waitQueued(t, d, 1)
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled queued call must return without waiting for the writer")
	}
	// A later call in the same batch still runs.
	after := make(chan error, 1)
	go func() { after <- d.batch(context.Background(), insert("after", 2)) }()
	waitQueued(t, d, 2)
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-after; err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
		t.Fatal("the cancelled call's fn ran")
	default:
	}
	if m := rows(t, d); fmt.Sprint(m) != "map[after:2 hold:0]" {
		t.Fatalf("rows: %v", m)
	}
	// A context already done never queues.
	if err := d.batch(ctx, insert("x", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("done ctx = %v", err)
	}
}

// TestBatchCancelAfterRun: once a call's fn has run, the end of its
// context does not make it report failure: it waits for the commit.
func TestBatchCancelAfterRun(t *testing.T) {
	d, _ := openBatchDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	err := d.batch(ctx, func(ctx context.Context, tx *sql.Tx) error {
		cancel() // the caller gives up while its write is in the batch
		time.Sleep(20 * time.Millisecond)
		return insert("kept", 1)(ctx, tx)
	})
	if err != nil {
		t.Fatalf("a committed write reported as %v", err)
	}
	if m := rows(t, d); m["kept"] != 1 {
		t.Fatalf("rows: %v", m)
	}
}

// TestBatchCloseDrains: Close commits and answers the queued calls before
// closing; calls after Close fail.
func TestBatchCloseDrains(t *testing.T) {
	d, path := openBatchDB(t)
	release, held := holdWriter(t, d)
	const n = 20
	res := make(chan error, n)
	for i := range n {
		go func() { res <- d.batch(context.Background(), insert(fmt.Sprint("q", i), i)) }()
	}
	waitQueued(t, d, n)
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	// Close has stopped the queue: new calls are refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.w.mu.Lock()
		c := d.w.closed
		d.w.mu.Unlock()
		if c {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not close the queue")
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.batch(context.Background(), insert("late", 1)); !errors.Is(err, errClosed) {
		t.Fatalf("call after Close = %v", err)
	}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-res; err != nil {
			t.Fatalf("queued call: %v", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	d2, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if m := rows(t, d2); len(m) != n+1 || m["q7"] != 7 {
		t.Fatalf("after reopen: %v", m)
	}
}

// TestBatchCommitFailure: when the batch's commit fails, every call whose
// write was in it gets the error and none of the writes is kept. A
// deferred foreign key makes COMMIT itself fail.
func TestBatchCommitFailure(t *testing.T) {
	d, _ := openBatchDB(t)
	if _, err := d.db.Exec(`CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	release, held := holdWriter(t, d)
	const n = 5
	res := make(chan error, n+1)
	for i := range n {
		go func() { res <- d.batch(context.Background(), insert(fmt.Sprint("w", i), i)) }()
	}
	go func() {
		res <- d.batch(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO child VALUES (42)`) // no parent 42: fails at COMMIT
			return err
		})
	}()
	waitQueued(t, d, n+1)
	release()
	if err := <-held; err != nil { // its own batch, committed before the others queued
		t.Fatal(err)
	}
	for range n + 1 {
		if err := <-res; err == nil || !strings.Contains(err.Error(), "commit batch") {
			t.Fatalf("a call of a failed commit = %v, want the commit error", err)
		}
	}
	if m := rows(t, d); fmt.Sprint(m) != "map[hold:0]" {
		t.Fatalf("rows after a failed commit: %v", m)
	}
	// The writer goes on with the next batch.
	if err := d.batch(context.Background(), insert("next", 1)); err != nil {
		t.Fatal(err)
	}
	if m := rows(t, d); fmt.Sprint(m) != "map[hold:0 next:1]" {
		t.Fatalf("rows: %v", m)
	}
}

// TestBatchAbortedTransaction: a call that kills the whole transaction
// (here, by rolling it back itself) fails the calls before it in the batch
// (nothing of theirs is committed, and they say so) and does not swallow
// the calls after it, which run in a fresh transaction.
func TestBatchAbortedTransaction(t *testing.T) {
	d, _ := openBatchDB(t)
	release, held := holdWriter(t, d)
	before := make(chan error, 1)
	go func() { before <- d.batch(context.Background(), insert("before", 1)) }()
	waitQueued(t, d, 1)
	killer := make(chan error, 1)
	go func() {
		killer <- d.batch(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `ROLLBACK`)
			return err
		})
	}()
	waitQueued(t, d, 2)
	after := make(chan error, 1)
	go func() { after <- d.batch(context.Background(), insert("after", 2)) }()
	waitQueued(t, d, 3)
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-before; err == nil {
		t.Fatal("before: its write was rolled back but it reported success")
	}
	if err := <-killer; err == nil {
		t.Fatal("killer reported success")
	}
	if err := <-after; err != nil {
		t.Fatalf("after: %v", err)
	}
	if m := rows(t, d); fmt.Sprint(m) != "map[after:2 hold:0]" {
		t.Fatalf("rows: %v", m)
	}
}

// TestBatchPanic: a panicking fn fails alone; the writer keeps going.
func TestBatchPanic(t *testing.T) {
	d, _ := openBatchDB(t)
	err := d.batch(context.Background(), func(context.Context, *sql.Tx) error { panic("bad write") })
	if err == nil {
		t.Fatal("panic reported as success")
	}
	if err := d.batch(context.Background(), insert("ok", 1)); err != nil {
		t.Fatal(err)
	}
}

// TestBatchConcurrentWithInTx: batch writers and plain transactions on
// other pooled connections share the database without lock errors (they
// wait on the busy timeout).
func TestBatchConcurrentWithInTx(t *testing.T) {
	d, _ := openBatchDB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 200 {
		wg.Go(func() { errs <- d.batch(context.Background(), insert(fmt.Sprint("b", i), i)) })
		if i%10 == 0 {
			wg.Go(func() {
				errs <- d.inTx(context.Background(), func(tx *sql.Tx) error { return insert(fmt.Sprint("t", i), i)(context.Background(), tx) })
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m := rows(t, d); len(m) != 220 {
		t.Fatalf("%d rows, want 220", len(m))
	}
}

// TestWriterStats: five writes queued behind a held one run as one batch;
// the counters see two batches, six writes and commit time inside busy
// time.
func TestWriterStats(t *testing.T) {
	d, _ := openBatchDB(t)
	ctx := context.Background()
	before := d.WriterStats()
	release, held := holdWriter(t, d)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if err := d.batch(ctx, insert(fmt.Sprint("s", i), i)); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, d, 5)
	release()
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	st := d.WriterStats()
	if b, w := st.Batches-before.Batches, st.Writes-before.Writes; b != 2 || w != 6 {
		t.Fatalf("batches %d writes %d, want 2 and 6", b, w)
	}
	// Busy time is added once the batch's callers have their answers.
	for deadline := time.Now().Add(5 * time.Second); st.Busy < st.Commit && time.Now().Before(deadline); st = d.WriterStats() {
		time.Sleep(time.Millisecond)
	}
	busy, commit := st.Busy-before.Busy, st.Commit-before.Commit
	if commit <= 0 || busy < commit || st.SlowCommits < before.SlowCommits {
		t.Fatalf("busy %v commit %v slow %d", busy, commit, st.SlowCommits)
	}
}
