package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/audit"
)

// AuditOptions configure OpenAuditLog. Zero values mean the defaults.
type AuditOptions struct {
	// Keys sign checkpoints and key the identifier HMACs. Required; every
	// replica appending to one database must hold the same keys (they are
	// derived from the shared vault).
	Keys audit.Keys
	// CheckpointEvery is the number of records between signed
	// checkpoints; if 0, audit.DefaultCheckpointEvery. The count is the
	// chain's, not a replica's: replicas should agree on it.
	CheckpointEvery int
	// Mirrors get a copy of each batch this replica committed (stdout).
	// A mirror sees this replica's records only.
	Mirrors []audit.Mirror
	// MaxBatch caps the records of one transaction of the writer; if 0,
	// audit.DefaultMaxBatch.
	MaxBatch int
	// Linger is how long a batch nobody waits for (outcome and detect
	// records) may wait for more before it is committed; an intent or an
	// action ends the wait and takes them along. If 0,
	// audit.DefaultLinger; negative disables it.
	Linger time.Duration
	// IntentTimeout bounds how long Intent and Action wait for
	// durability (on top of their context); if 0,
	// audit.DefaultIntentTimeout.
	IntentTimeout time.Duration
	// QueueWait is how long Record waits for room in a full queue before
	// it drops the record; if 0, audit.DefaultQueueWait.
	QueueWait time.Duration
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
	// Logger receives write failures and drops; if nil, discarded.
	Logger *slog.Logger
	// ObserveCommit, if set, is called after each commit that stored
	// records, with its duration and the number of records (metrics). It
	// runs on the writer goroutine (or the ledger's caller) and must not
	// block.
	ObserveCommit func(d time.Duration, records int)
}

// AuditLog is the hash-chained audit log (internal/audit) kept in the
// database every replica shares, as one chain. The chain's head is the
// row of audit_head: every transaction that appends locks it (SELECT ...
// FOR UPDATE), continues the chain from it, stores its records (and the
// checkpoint due among them, signed with the shared key) and moves it,
// all in one commit. So replicas append one after another and nothing
// the replica keeps in memory can go stale: a transaction that does not
// commit leaves neither records nor a gap, since the head it moved goes
// back with it.
//
// Outcome and detect records are queued and written by a background
// writer, one transaction per batch; intent and action records go through
// the same writer and their callers wait until their batch has committed.
// An order's intent is written in the ledger's own transaction instead
// (appendIntent), sharing its budget reservation's commit. AuditLog
// implements audit.Sink and is safe for concurrent use.
type AuditLog struct {
	d     *DB
	o     AuditOptions
	rec   *audit.Recorder
	queue chan *auditPending
	done  chan struct{}

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool

	health   atomic.Pointer[error]
	closeErr error

	records, checkpoints, batches, failures, dropped atomic.Uint64
	maxBatch                                         atomic.Int64

	// The writer's loop (audit.Batcher) and the outcome and detect
	// records of failed batches it tries again (writer-owned).
	batcher audit.Batcher[*auditPending]
	retry   audit.Retained[*auditPending]
}

type auditPending struct {
	rec    audit.Record
	ctx    context.Context // waited records only
	done   chan error      // waited records only
	gaveUp bool            // its caller had given up: left out of the batch
}

// auditBatchTimeout bounds one transaction of the writer (the head's lock
// wait included).
const auditBatchTimeout = 10 * time.Second

// errAuditOpen is returned by a second OpenAuditLog on one DB.
var errAuditOpen = errors.New("postgres: the audit log is already open on this pool")

// OpenAuditLog starts the audit log kept in the database. A DB has at
// most one; other replicas open theirs on their own pools and append to
// the same chain. It checks that the head row and the last stored record
// agree (a log copied in without its head row is picked up from its last
// record); a log whose end was cut off or altered does not open.
func (d *DB) OpenAuditLog(ctx context.Context, o AuditOptions) (*AuditLog, error) {
	if o.CheckpointEvery < 0 || o.MaxBatch < 0 {
		return nil, errors.New("postgres: audit log: checkpoint_every and max_batch must not be negative")
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = audit.DefaultMaxBatch
	}
	if o.Linger == 0 {
		o.Linger = audit.DefaultLinger
	}
	if o.IntentTimeout <= 0 {
		o.IntentTimeout = audit.DefaultIntentTimeout
	}
	if o.QueueWait <= 0 {
		o.QueueWait = audit.DefaultQueueWait
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := audit.NewChain(o.Keys, o.CheckpointEvery, audit.Head{}); err != nil {
		return nil, fmt.Errorf("postgres: audit log: %w", err)
	}
	if err := d.inTx(ctx, func(tx pgx.Tx) error { return reconcileHead(ctx, tx, o.Keys) }); err != nil {
		return nil, fmt.Errorf("postgres: audit log: %s: %w", d.where, err)
	}
	l := &AuditLog{
		d: d, o: o, rec: audit.NewRecorder(o.Keys),
		queue: make(chan *auditPending, 4*o.MaxBatch), done: make(chan struct{}),
	}
	d.intentsMu.Lock()
	if d.intents != nil {
		d.intentsMu.Unlock()
		return nil, errAuditOpen
	}
	d.intents = l
	d.intentsMu.Unlock()
	l.batcher = audit.Batcher[*auditPending]{Queue: l.queue, Max: o.MaxBatch, Linger: o.Linger, Kept: &l.retry,
		Waited: func(p *auditPending) bool { return p.done != nil }}
	go l.run()
	return l, nil
}

// The audit log's statements.
const (
	qAuditLockHead   = `SELECT seq, hash, checkpoint_seq, time_ns FROM audit_head WHERE id = 1 FOR UPDATE`
	qAuditReadHead   = `SELECT seq, hash, checkpoint_seq, time_ns FROM audit_head WHERE id = 1`
	qAuditSetHead    = `UPDATE audit_head SET seq = $1, hash = $2, checkpoint_seq = $3, time_ns = $4 WHERE id = 1`
	qAuditInsert     = `INSERT INTO audit_records (seq, data) VALUES ($1, $2)`
	qAuditInsertMany = `INSERT INTO audit_records (seq, data) SELECT * FROM unnest($1::bigint[], $2::bytea[])`
	qAuditCheckpoint = `INSERT INTO audit_checkpoints (seq, data) VALUES ($1, $2)`
	qAuditLast       = `SELECT seq, data FROM audit_records ORDER BY seq DESC LIMIT 1`
	qAuditLastCP     = `SELECT seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1`
)

// chainHead is the head row: where the chain ends, and the time of its
// last record.
type chainHead struct {
	audit.Head
	Time time.Time
}

// lockHead locks the chain's head row for the rest of tx and returns it.
func lockHead(ctx context.Context, tx pgx.Tx) (chainHead, error) {
	return scanHead(tx.QueryRow(ctx, qAuditLockHead))
}

func scanHead(row pgx.Row) (chainHead, error) {
	var seq, cp, ns int64
	var hash string
	err := row.Scan(&seq, &hash, &cp, &ns)
	if errors.Is(err, pgx.ErrNoRows) {
		return chainHead{}, errors.New("audit head row missing (migration 0003_audit)")
	}
	if err != nil {
		return chainHead{}, fmt.Errorf("lock audit head: %w", err)
	}
	if seq < 0 || cp < 0 {
		return chainHead{}, errors.New("audit head row holds a negative seq")
	}
	return chainHead{Head: audit.Head{Seq: uint64(seq), Hash: hash, CheckpointSeq: uint64(cp)}, Time: time.Unix(0, ns)}, nil // #nosec G115 -- checked >= 0
}

// setHead queues the update that moves the head row to h.
func setHead(b *pgx.Batch, h audit.Head, t time.Time) {
	b.Queue(qAuditSetHead, int64(h.Seq), h.Hash, int64(h.CheckpointSeq), t.UnixNano()) // #nosec G115 -- seq < 2^63
}

// reconcileHead checks, under the head's lock, that the head row names
// the last stored record, which must be intact; a head row still at its
// start over stored records (a table copy) is moved to them.
func reconcileHead(ctx context.Context, tx pgx.Tx, keys audit.Keys) error {
	h, err := lockHead(ctx, tx)
	if err != nil {
		return err
	}
	var seq int64
	var data []byte
	err = tx.QueryRow(ctx, qAuditLast).Scan(&seq, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		if h.Seq != 0 {
			return fmt.Errorf("log truncated: the head names record %d but no record is stored (run keystile audit verify)", h.Seq)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read last record: %w", err)
	}
	r, err := checkStored(keys, data)
	if err == nil && int64(r.Seq) != seq { // #nosec G115 -- seq < 2^63
		err = fmt.Errorf("row %d holds record %d", seq, r.Seq)
	}
	if err != nil {
		return fmt.Errorf("last record: %w (run keystile audit verify)", err)
	}
	switch {
	case r.Seq == h.Seq && r.Hash == h.Hash:
		return nil
	case r.Seq == h.Seq:
		return fmt.Errorf("last record %d differs from the head's (altered; run keystile audit verify)", r.Seq)
	case r.Seq < h.Seq:
		return fmt.Errorf("log truncated: the head names record %d, the last stored is %d (run keystile audit verify)", h.Seq, r.Seq)
	case h.Seq != 0:
		return fmt.Errorf("records %d..%d were stored after the head (%d) outside keystile (run keystile audit verify)", h.Seq+1, r.Seq, h.Seq)
	}
	// A log copied in without its head: continue after its last record.
	var cp int64
	if err := tx.QueryRow(ctx, qAuditLastCP).Scan(&cp); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read last checkpoint: %w", err)
	}
	if cp != seq {
		cp = 0
	}
	if _, err := tx.Exec(ctx, qAuditSetHead, seq, r.Hash, cp, r.Time.UnixNano()); err != nil {
		return fmt.Errorf("set audit head: %w", err)
	}
	return nil
}

// checkStored decodes stored record bytes and checks they are the
// canonical encoding of a record with the hash it carries: sealing the
// decoded fields again after its prev must give the same bytes.
func checkStored(keys audit.Keys, data []byte) (audit.Record, error) {
	r, err := audit.DecodeRecord(data)
	if err != nil {
		return r, err
	}
	if r.Seq == 0 {
		return r, errors.New("record 0 (no such seq)")
	}
	c, err := audit.NewChain(keys, 0, audit.Head{Seq: r.Seq - 1, Hash: r.Prev})
	if err != nil {
		return r, err
	}
	again := r
	again.Raw = nil
	c.Seal(&again, r.Time)
	if !bytes.Equal(again.Raw, data) {
		return r, errors.New("stored bytes are not the record's canonical, hashed encoding (altered)")
	}
	return r, nil
}

// appendTx continues the chain in tx: it locks the head, seals recs after
// it (setting their Seq, Time, Prev, Hash and Raw), stores them with the
// checkpoints that fall due among them and moves the head. It returns the
// checkpoints. Nothing of it stays if tx does not commit.
func (l *AuditLog) appendTx(ctx context.Context, tx pgx.Tx, recs []audit.Record) ([]audit.Checkpoint, error) {
	h, err := lockHead(ctx, tx)
	if err != nil {
		return nil, err
	}
	return l.store(ctx, tx, h, recs)
}

// store is appendTx once tx holds the head h. Records are timed by this
// replica's clock, but never before the record they follow: times do not
// go backwards along the chain when replicas' clocks differ.
func (l *AuditLog) store(ctx context.Context, tx pgx.Tx, h chainHead, recs []audit.Record) ([]audit.Checkpoint, error) {
	chain, err := audit.NewChain(l.o.Keys, l.o.CheckpointEvery, h.Head)
	if err != nil {
		return nil, err
	}
	now := l.o.Now()
	if now.Before(h.Time) {
		now = h.Time
	}
	var cps []audit.Checkpoint
	for i := range recs {
		if cp, ok := chain.Seal(&recs[i], now); ok {
			cps = append(cps, cp)
		}
	}
	b := &pgx.Batch{}
	if len(recs) == 1 {
		b.Queue(qAuditInsert, int64(recs[0].Seq), recs[0].Raw) // #nosec G115 -- seq < 2^63
	} else if len(recs) > 1 {
		seqs, data := make([]int64, len(recs)), make([][]byte, len(recs))
		for i := range recs {
			seqs[i], data[i] = int64(recs[i].Seq), recs[i].Raw // #nosec G115 -- seq < 2^63
		}
		b.Queue(qAuditInsertMany, seqs, data)
	}
	for i := range cps {
		b.Queue(qAuditCheckpoint, int64(cps[i].Seq), cps[i].Raw) // #nosec G115 -- seq < 2^63
	}
	nh := chain.Head()
	setHead(b, nh, now)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("append records %d..%d: %w", h.Seq+1, nh.Seq, err)
	}
	return cps, nil
}

// appendIntent implements intentLog: the ledger seals an order's intent
// record inside its own transaction. The head stays locked until tx ends,
// so the ledger calls it last, just before committing.
func (l *AuditLog) appendIntent(ctx context.Context, tx pgx.Tx, e audit.Event) (func(committed bool), error) {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return nil, audit.ErrClosed
	}
	recs := []audit.Record{l.rec.Record(e, audit.KindIntent)}
	began := time.Now()
	cps, err := l.appendTx(ctx, tx, recs)
	if err != nil {
		return nil, fmt.Errorf("audit: intent: %w", err)
	}
	return func(committed bool) {
		if committed {
			l.committed(recs, cps, time.Since(began))
		}
	}, nil
}

// checkIntent implements intentLog: a closed log refuses.
func (l *AuditLog) checkIntent(audit.Event) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return audit.ErrClosed
	}
	return nil
}

// appendIntents implements intentLog: the intents of a ledger batch,
// sealed in order under one lock of the head, which the ledger takes
// last, just before committing.
func (l *AuditLog) appendIntents(ctx context.Context, tx pgx.Tx, es []audit.Event) (func(committed bool), error) {
	if err := l.checkIntent(audit.Event{}); err != nil {
		return nil, err
	}
	recs := make([]audit.Record, len(es))
	for i, e := range es {
		recs[i] = l.rec.Record(e, audit.KindIntent)
	}
	began := time.Now()
	cps, err := l.appendTx(ctx, tx, recs)
	if err != nil {
		return nil, fmt.Errorf("audit: intents: %w", err)
	}
	return func(committed bool) {
		if committed {
			l.committed(recs, cps, time.Since(began))
		}
	}, nil
}

// Intent writes an intent record and returns once it is durable. An error
// means it may not be: the caller must refuse the write operation (503).
// It waits at most AuditOptions.IntentTimeout.
func (l *AuditLog) Intent(ctx context.Context, e audit.Event) error {
	return l.durable(ctx, l.rec.Record(e, audit.KindIntent))
}

// Action writes an action record (audit.KindAction: a lever such as the
// kill switch, with Actor, Reason and Detail) and returns once it is
// durable, within AuditOptions.IntentTimeout, like Intent.
func (l *AuditLog) Action(ctx context.Context, e audit.Event) error {
	return l.durable(ctx, l.rec.Record(e, audit.KindAction))
}

// durable queues rec and waits until its batch has committed.
func (l *AuditLog) durable(ctx context.Context, rec audit.Record) error {
	ctx, cancel := context.WithTimeout(ctx, l.o.IntentTimeout)
	defer cancel()
	p := &auditPending{rec: rec, ctx: ctx, done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return audit.ErrClosed
	}
	select {
	case l.queue <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return fmt.Errorf("audit: %s: queue full: %w", rec.Kind, l.waitErr(ctx))
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: %s: not durable in time: %w", rec.Kind, l.waitErr(ctx))
	}
}

// waitErr explains a timed-out wait: the last write failure if there is
// one, else the context's error.
func (l *AuditLog) waitErr(ctx context.Context) error {
	if err := l.Healthy(); err != nil {
		return err
	}
	return ctx.Err()
}

// Record implements audit.Sink: it queues an outcome record without
// waiting. A record whose batch fails is kept and written again when the
// database answers (audit.Retained); one that cannot be queued (closed
// log, queue full for QueueWait) or kept is dropped, counted and logged.
func (l *AuditLog) Record(ctx context.Context, e audit.Event) {
	l.enqueue(ctx, l.rec.Record(e, audit.KindOutcome), e.RequestID)
}

// Detect queues a detect record (a finding of the anomaly detector or an
// action it took) with e.Evidence, like Record: without waiting for it to
// be durable.
func (l *AuditLog) Detect(ctx context.Context, e audit.Event) {
	l.enqueue(ctx, l.rec.Record(e, audit.KindDetect), e.RequestID)
}

func (l *AuditLog) enqueue(ctx context.Context, rec audit.Record, requestID string) {
	p := &auditPending{rec: rec}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.drop(ctx, 1, "log closed", requestID)
		return
	}
	select {
	case l.queue <- p:
		return
	default:
	}
	t := time.NewTimer(l.o.QueueWait)
	defer t.Stop()
	select {
	case l.queue <- p:
	case <-t.C:
		l.drop(ctx, 1, "queue full", requestID)
	}
}

func (l *AuditLog) drop(ctx context.Context, n int, why, requestID string) {
	l.dropped.Add(uint64(max(n, 0))) // #nosec G115 -- clamped to >= 0
	l.o.Logger.LogAttrs(ctx, slog.LevelError, "audit: outcome record dropped",
		slog.String("reason", why), slog.Int("records", n), slog.String("request_id", requestID))
}

// run is the writer: it drains the queue in batches of at most MaxBatch
// and commits each batch in one transaction.
func (l *AuditLog) run() {
	defer close(l.done)
	l.batcher.Run(l.commit)
	l.dropKept()
	l.closeErr = l.finish()
}

// dropKept drops (counts and logs) the records of failed batches still
// kept when the writer ends.
func (l *AuditLog) dropKept() {
	if n := l.retry.Drain(); n > 0 {
		l.drop(context.Background(), n, "write failed; log closed before a retry succeeded", "")
	}
}

// commit writes batch in one transaction and tells the waiters. Once
// the transaction holds the head it takes along what was queued while it
// waited for it (other replicas' commits): under contention batches grow
// instead of queueing. It reports whether the queue is still open.
func (l *AuditLog) commit(batch *[]*auditPending, open bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), auditBatchTimeout)
	defer cancel()
	began := time.Now()
	var recs []audit.Record
	var cps []audit.Checkpoint
	err := l.d.inTx(ctx, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		if open {
			open = l.batcher.Drain(batch)
		}
		recs = recs[:0]
		for _, p := range *batch {
			p.gaveUp = p.ctx != nil && p.ctx.Err() != nil // the caller has refused
			if !p.gaveUp {
				recs = append(recs, p.rec)
			}
		}
		if len(recs) == 0 {
			return nil
		}
		cps, err = l.store(ctx, tx, h, recs)
		return err
	})
	if err != nil {
		err = fmt.Errorf("audit: write: %s: %w", l.d.where, err)
		l.setFailure(err)
	}
	var failed []*auditPending
	for _, p := range *batch {
		switch {
		case p.gaveUp:
			p.done <- p.ctx.Err()
		case p.done != nil:
			p.done <- err
		case err != nil:
			failed = append(failed, p)
		}
	}
	if len(failed) > 0 {
		if over := l.retry.Keep(failed); over > 0 {
			l.drop(context.Background(), over, "write failed; retry buffer full", "")
		}
		l.o.Logger.Warn("audit: records kept to write again", slog.Int("records", len(failed)), slog.Int("kept", l.retry.Len()))
	} else if err == nil {
		l.retry.Reset()
	}
	if err == nil && len(recs) > 0 {
		l.committed(recs, cps, time.Since(began))
	}
	return open
}

// committed counts a commit that stored recs and cps and mirrors them.
func (l *AuditLog) committed(recs []audit.Record, cps []audit.Checkpoint, took time.Duration) {
	l.health.Store(nil)
	l.records.Add(uint64(len(recs)))
	l.checkpoints.Add(uint64(len(cps)))
	l.batches.Add(1)
	for {
		m := l.maxBatch.Load()
		if int64(len(recs)) <= m || l.maxBatch.CompareAndSwap(m, int64(len(recs))) {
			break
		}
	}
	if len(recs) > 0 && l.o.ObserveCommit != nil {
		l.o.ObserveCommit(took, len(recs))
	}
	for _, m := range l.o.Mirrors {
		if err := m.Mirror(recs, cps); err != nil {
			l.o.Logger.Warn("audit: mirror failed", slog.String("error", err.Error()))
		}
	}
}

func (l *AuditLog) setFailure(err error) {
	l.failures.Add(1)
	l.health.Store(&err)
	l.o.Logger.Error("audit: write failed", slog.String("error", err.Error()))
}

// finish signs a checkpoint of the chain's head if none covers it yet
// (whichever replica wrote the last records).
func (l *AuditLog) finish() error {
	ctx, cancel := context.WithTimeout(context.Background(), auditBatchTimeout)
	defer cancel()
	var cps []audit.Checkpoint
	err := l.d.inTx(ctx, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		chain, err := audit.NewChain(l.o.Keys, l.o.CheckpointEvery, h.Head)
		if err != nil {
			return err
		}
		now := l.o.Now()
		if now.Before(h.Time) {
			now = h.Time
		}
		cp, ok := chain.Pending(now)
		if !ok {
			return nil
		}
		b := &pgx.Batch{}
		b.Queue(qAuditCheckpoint, int64(cp.Seq), cp.Raw) // #nosec G115 -- seq < 2^63
		setHead(b, chain.Head(), h.Time)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("store checkpoint %d: %w", cp.Seq, err)
		}
		cps = append(cps, cp)
		return nil
	})
	if err != nil {
		err = fmt.Errorf("audit: final checkpoint: %s: %w", l.d.where, err)
		l.setFailure(err)
		return err
	}
	if len(cps) > 0 {
		l.checkpoints.Add(1)
		for _, m := range l.o.Mirrors {
			_ = m.Mirror(nil, cps)
		}
	}
	return nil
}

// Healthy returns nil, or the last write failure if no write has
// succeeded since.
func (l *AuditLog) Healthy() error {
	if p := l.health.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns this replica's counters.
func (l *AuditLog) Stats() audit.Stats {
	return audit.Stats{
		Records: l.records.Load(), Checkpoints: l.checkpoints.Load(), Batches: l.batches.Load(),
		MaxBatch: int(l.maxBatch.Load()), Failures: l.failures.Load(), Dropped: l.dropped.Load(),
		Queued: len(l.queue),
	}
}

// TokenHash returns the HMAC under which a token public id appears in
// records.
func (l *AuditLog) TokenHash(id string) string { return l.o.Keys.TokenHash(id) }

// Close stops taking records, writes what is queued, signs a final
// checkpoint of the chain's head and detaches the log from the DB (the
// ledger then writes no intent records). The pool stays open. If ctx
// ends first, the writer keeps draining in the background and Close
// returns ctx's error. A second Close returns audit.ErrClosed.
func (l *AuditLog) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return audit.ErrClosed
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	l.d.intentsMu.Lock()
	if l.d.intents == intentLog(l) {
		l.d.intents = nil
	}
	l.d.intentsMu.Unlock()
	select {
	case <-l.done:
		return l.closeErr
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

// ImportAudit copies a log kept elsewhere (the SQLite database's audit
// tables, or the audit.db file of earlier versions: `keystile migrate
// --from`) into the database's audit tables, byte for byte, and moves the
// head after its last record, when the database holds no record yet. It
// returns the number of records copied (0 when the database already has
// a log). The copy is one transaction, holding the head: all of it or
// nothing, and no replica appends meanwhile. Verify src first (`keystile
// audit verify`); OpenAuditLog refuses a log whose last record is
// altered.
func (d *DB) ImportAudit(ctx context.Context, src audit.Reader) (int, error) {
	n := 0
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		var have bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_records)`).Scan(&have); err != nil {
			return err
		}
		if have || h.Seq != 0 {
			return nil
		}
		var last audit.Record
		rows := make([][]any, 0, auditScanPage)
		flush := func(table string) error {
			if len(rows) == 0 {
				return nil
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, []string{"seq", "data"}, pgx.CopyFromRows(rows))
			rows = rows[:0]
			return err
		}
		err = src.Scan(ctx, 1, func(r audit.Record) error {
			if r.Hash == "" || r.Seq == 0 {
				return fmt.Errorf("record after %d is malformed", last.Seq)
			}
			rows = append(rows, []any{int64(r.Seq), r.Raw}) // #nosec G115 -- seq < 2^63
			last = r
			n++
			if len(rows) == cap(rows) {
				return flush("audit_records")
			}
			return nil
		})
		if err == nil {
			err = flush("audit_records")
		}
		if err != nil {
			return fmt.Errorf("records: %w", err)
		}
		var lastCP uint64
		err = src.Checkpoints(ctx, func(c audit.Checkpoint) error {
			rows = append(rows, []any{int64(c.Seq), c.Raw}) // #nosec G115 -- seq < 2^63
			lastCP = c.Seq
			if len(rows) == cap(rows) {
				return flush("audit_checkpoints")
			}
			return nil
		})
		if err == nil {
			err = flush("audit_checkpoints")
		}
		if err != nil {
			return fmt.Errorf("checkpoints: %w", err)
		}
		if n == 0 {
			return nil
		}
		if lastCP != last.Seq {
			lastCP = 0
		}
		_, err = tx.Exec(ctx, qAuditSetHead, int64(last.Seq), last.Hash, int64(lastCP), last.Time.UnixNano()) // #nosec G115 -- seq < 2^63
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: import audit log into %s: %w", d.where, err)
	}
	return n, nil
}

// auditScanPage is how many records one query of Scan reads.
const auditScanPage = 4096

// AuditReader reads the audit log kept in the database (audit.Verify,
// `keystile audit`). It reads committed rows only, so it is safe to use
// while replicas append: it sees a prefix of the chain.
type AuditReader struct{ d *DB }

// AuditReader returns a reader of the audit log kept in the database.
func (d *DB) AuditReader() *AuditReader { return &AuditReader{d: d} }

// Head returns the head row: the seq and hash of the last record
// committed. Verify cannot tell that unsigned records were cut from the
// end of a log (a Report whose LastSeq is below the head's Seq shows it);
// the head row can, unless it was altered with them.
func (r *AuditReader) Head(ctx context.Context) (audit.Head, error) {
	h, err := scanHead(r.d.pool.QueryRow(ctx, qAuditReadHead))
	if err != nil {
		return audit.Head{}, fmt.Errorf("postgres: audit head: %w", err)
	}
	return h.Head, nil
}

// Scan implements audit.Reader, a page at a time.
func (r *AuditReader) Scan(ctx context.Context, from uint64, fn func(audit.Record) error) error {
	next := int64(from) // #nosec G115 -- seq < 2^63
	for {
		type row struct {
			seq  int64
			data []byte
		}
		rows, err := r.d.pool.Query(ctx, `SELECT seq, data FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2`, next, auditScanPage)
		if err != nil {
			return fmt.Errorf("postgres: audit scan: %w", err)
		}
		page, err := pgx.CollectRows(rows, func(rw pgx.CollectableRow) (row, error) {
			var x row
			err := rw.Scan(&x.seq, &x.data)
			return x, err
		})
		if err != nil {
			return fmt.Errorf("postgres: audit scan: %w", err)
		}
		for _, x := range page {
			rec, _ := audit.DecodeRecord(x.data)
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(page) < auditScanPage {
			return nil
		}
		next = page[len(page)-1].seq + 1
	}
}

// Checkpoints implements audit.Reader.
func (r *AuditReader) Checkpoints(ctx context.Context, fn func(audit.Checkpoint) error) error {
	rows, err := r.d.pool.Query(ctx, `SELECT data FROM audit_checkpoints ORDER BY id`)
	if err != nil {
		return fmt.Errorf("postgres: audit checkpoints: %w", err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return fmt.Errorf("postgres: audit checkpoints: %w", err)
	}
	for _, d := range all {
		c, _ := audit.DecodeCheckpoint(d)
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ audit.Sink   = (*AuditLog)(nil)
	_ intentLog    = (*AuditLog)(nil)
	_ audit.Reader = (*AuditReader)(nil)
)
