package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// AuditOptions configure OpenAuditLog. Zero values mean the defaults of
// audit.Options.
type AuditOptions struct {
	// Keys sign checkpoints and key the identifier HMACs. Required.
	Keys audit.Keys
	// CheckpointEvery is the number of records between signed
	// checkpoints.
	CheckpointEvery int
	// Mirrors get a copy of each committed batch's records (stdout).
	Mirrors []audit.Mirror
	// Linger is how long a batch of writes nobody waits for (outcome
	// records, stored answers) may wait for more; an intent, an order's
	// ledger write or any other waited write ends the wait and takes them
	// along. If 0, DefaultLinger; negative disables it.
	Linger time.Duration
	// IntentTimeout bounds how long Intent and the ledger's Open wait for
	// durability (on top of their context). If 0,
	// audit.DefaultIntentTimeout.
	IntentTimeout time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger receives write failures and drops. If nil, discarded.
	Logger *slog.Logger
	// ObserveCommit, if set, is called after each commit that stored
	// records, with the commit's duration and the number of records
	// (metrics). It runs on the writer goroutine and must not block.
	ObserveCommit func(d time.Duration, records int)
}

// AuditLog is the hash-chained audit log (internal/audit) kept in the
// database's own tables (migration 0009), written by the database's
// group-commit writer: outcome records without waiting, intent records
// durable before Intent returns, and an order's intent in the same
// transaction as its budget reservation and idempotency claim
// (Ledger.Open). The chain is sealed on the writer, in commit order; a
// batch that does not commit puts the chain's head back. It implements
// audit.Sink; it is safe for concurrent use.
//
// The records and checkpoints are the same bytes in the same tables as
// audit.SQLiteStore's, so audit.OpenSQLiteReader on the database file
// reads (and verifies) them.
type AuditLog struct {
	d     *DB
	o     AuditOptions
	rec   *audit.Recorder
	chain *audit.Chain // writer-owned

	// writer-owned state of the open batch
	mark     audit.Head
	recs     []audit.Record // sealed in the batch (kept only for mirrors)
	cps      []audit.Checkpoint
	nRecs    int // records sealed in the batch
	nOutcome int // of them, outcome records (nobody waits for them)

	closed                                  atomic.Bool
	health                                  atomic.Pointer[error]
	records, checkpoints, batches, failures atomic.Uint64
	dropped                                 atomic.Uint64
	maxBatch                                atomic.Int64
}

// DefaultLinger is AuditOptions.Linger's default: longer than the audit
// log's own (audit.DefaultLinger), since here the waited writes (orders)
// end it and take the records along, so it only bounds how long a quiet
// or read-only server holds records before a commit of their own (reads
// then cost a fraction of a commit each).
const DefaultLinger = 25 * time.Millisecond

// errAuditOpen is returned by a second OpenAuditLog on one DB.
var errAuditOpen = errors.New("sqlite: the audit log is already open")

// OpenAuditLog starts the audit log kept in the database, resuming the
// chain from its stored head. A DB has at most one.
func (d *DB) OpenAuditLog(ctx context.Context, o AuditOptions) (*AuditLog, error) {
	if o.IntentTimeout <= 0 {
		o.IntentTimeout = audit.DefaultIntentTimeout
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	head, err := audit.ReadHead(ctx, d.db)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit log: %w", err)
	}
	chain, err := audit.NewChain(o.Keys, o.CheckpointEvery, head)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit log: %w", err)
	}
	l := &AuditLog{d: d, o: o, chain: chain, rec: audit.NewRecorder(o.Keys)}
	if !d.auditLog.CompareAndSwap(nil, l) {
		return nil, errAuditOpen
	}
	if o.Linger > 0 {
		d.w.linger.Store(int64(o.Linger))
	}
	d.addParticipant(l)
	return l, nil
}

// Intent writes an intent record and returns once it is durable. An error
// means it may not be: the caller must refuse the write operation (503).
// It waits at most Options.IntentTimeout.
func (l *AuditLog) Intent(ctx context.Context, e audit.Event) error {
	return l.durable(ctx, l.rec.Record(e, audit.KindIntent))
}

// Action writes an action record (audit.KindAction: a lever such as the
// kill switch, with Actor, Reason and Detail) and returns once it is
// durable, within Options.IntentTimeout, like Intent.
func (l *AuditLog) Action(ctx context.Context, e audit.Event) error {
	return l.durable(ctx, l.rec.Record(e, audit.KindAction))
}

// durable stores rec in a write of its own and waits until it is durable.
func (l *AuditLog) durable(ctx context.Context, rec audit.Record) error {
	if l.closed.Load() {
		return audit.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.IntentTimeout)
	defer cancel()
	err := l.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return l.append(ctx, tx, &rec, false)
	})
	if err != nil {
		return fmt.Errorf("audit: %s: %w", rec.Kind, l.waitErr(err))
	}
	return nil
}

// waitErr explains a failed wait: the last write failure if there is one
// and the wait merely timed out.
func (l *AuditLog) waitErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		if h := l.Healthy(); h != nil {
			return h
		}
	}
	return err
}

// Record implements audit.Sink: it queues an outcome record without
// waiting. A record that cannot be queued (closed log, full queue) or
// whose batch fails is dropped, counted and logged.
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
	if l.closed.Load() {
		l.drop(ctx, 1, "log closed", requestID)
		return
	}
	err := l.d.writeAsync(func(ctx context.Context, tx *sql.Tx) error {
		return l.append(ctx, tx, &rec, true)
	}, nil)
	if err != nil {
		l.drop(ctx, 1, err.Error(), requestID)
	}
}

func (l *AuditLog) drop(ctx context.Context, n int, why, requestID string) {
	l.dropped.Add(uint64(max(n, 0))) // #nosec G115 -- clamped to >= 0
	l.o.Logger.LogAttrs(ctx, slog.LevelError, "audit: outcome record dropped",
		slog.String("reason", why), slog.Int("records", n), slog.String("request_id", requestID))
}

// append seals rec into the chain and stores it (with the checkpoint due
// at it), on the writer.
func (l *AuditLog) append(ctx context.Context, tx *sql.Tx, rec *audit.Record, outcome bool) error {
	cp, due := l.chain.Seal(rec, l.o.Now())
	if _, err := l.d.exec(ctx, tx, qAuditInsert, int64(rec.Seq), rec.Raw); err != nil { // #nosec G115 -- seq < 2^63
		return fmt.Errorf("audit: insert record %d: %w", rec.Seq, err)
	}
	if due {
		if err := l.storeCheckpoint(ctx, tx, cp); err != nil {
			return err
		}
	}
	l.nRecs++
	if outcome {
		l.nOutcome++
	}
	if len(l.o.Mirrors) > 0 {
		l.recs = append(l.recs, *rec)
	}
	return nil
}

func (l *AuditLog) storeCheckpoint(ctx context.Context, tx *sql.Tx, cp audit.Checkpoint) error {
	if _, err := l.d.exec(ctx, tx, qAuditCheckpoint, int64(cp.Seq), cp.Raw); err != nil { // #nosec G115 -- seq < 2^63
		return fmt.Errorf("audit: insert checkpoint %d: %w", cp.Seq, err)
	}
	l.cps = append(l.cps, cp)
	return nil
}

// begin implements participant: a batch starts from the chain's head,
// which is read again if another connection wrote to the database.
func (l *AuditLog) begin(ctx context.Context, tx *sql.Tx, external bool) error {
	if external {
		h, err := audit.ReadHead(ctx, tx)
		if err != nil {
			return fmt.Errorf("audit: resume: %w", err)
		}
		l.chain.Reset(h)
	}
	l.mark = l.chain.Head()
	return nil
}

func (l *AuditLog) flush(context.Context, *sql.Tx) error { return nil }

// end implements participant.
func (l *AuditLog) end(err error, commit time.Duration) {
	n, outcomes, recs, cps := l.nRecs, l.nOutcome, l.recs, l.cps
	l.nRecs, l.nOutcome, l.recs, l.cps = 0, 0, l.recs[:0], l.cps[:0]
	if err != nil {
		l.chain.Reset(l.mark)
		if n > 0 || len(cps) > 0 {
			err = fmt.Errorf("audit: write: %w", err)
			l.failures.Add(1)
			l.health.Store(&err)
			l.o.Logger.Error("audit: write failed", slog.String("error", err.Error()))
		}
		if outcomes > 0 {
			l.drop(context.Background(), outcomes, "write failed", "")
		}
		return
	}
	if n == 0 && len(cps) == 0 {
		return
	}
	l.health.Store(nil)
	l.records.Add(uint64(n))            // #nosec G115 -- n >= 0
	l.checkpoints.Add(uint64(len(cps))) // #nosec G115 -- len >= 0
	l.batches.Add(1)
	if int64(n) > l.maxBatch.Load() {
		l.maxBatch.Store(int64(n))
	}
	if n > 0 && l.o.ObserveCommit != nil {
		l.o.ObserveCommit(commit, n)
	}
	for _, m := range l.o.Mirrors {
		if err := m.Mirror(recs, cps); err != nil {
			l.o.Logger.Warn("audit: mirror failed", slog.String("error", err.Error()))
		}
	}
}

// Healthy returns nil, or the last write failure if no write of records
// has succeeded since.
func (l *AuditLog) Healthy() error {
	if p := l.health.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the log's counters.
func (l *AuditLog) Stats() audit.Stats {
	l.d.w.mu.Lock()
	queued := l.d.w.async
	l.d.w.mu.Unlock()
	return audit.Stats{Records: l.records.Load(), Checkpoints: l.checkpoints.Load(), Batches: l.batches.Load(),
		MaxBatch: int(l.maxBatch.Load()), Failures: l.failures.Load(), Dropped: l.dropped.Load(), Queued: queued}
}

// TokenHash returns the HMAC under which a token public id appears in
// records.
func (l *AuditLog) TokenHash(id string) string { return l.o.Keys.TokenHash(id) }

// Close stops taking records and signs a final checkpoint of the chain's
// head (records queued before it are written first). The database stays
// open; a second Close returns audit.ErrClosed.
func (l *AuditLog) Close(ctx context.Context) error {
	if !l.closed.CompareAndSwap(false, true) {
		return audit.ErrClosed
	}
	err := l.d.writeDirect(context.WithoutCancel(ctx), func(ctx context.Context, tx *sql.Tx) error {
		if cp, ok := l.chain.Pending(l.o.Now()); ok {
			return l.storeCheckpoint(ctx, tx, cp)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: final checkpoint: %w", err)
	}
	return nil
}

// The audit log's statements (prepared in Open).
const (
	qAuditInsert     = `INSERT INTO audit_records (seq, data) VALUES (?, ?)`
	qAuditCheckpoint = `INSERT INTO audit_checkpoints (seq, data) VALUES (?, ?)`
)

var (
	_ audit.Sink  = (*AuditLog)(nil)
	_ participant = (*AuditLog)(nil)
)

// ImportAudit copies a log kept elsewhere (the audit.db file of earlier
// versions) into the database's audit tables, byte for byte, when those
// hold nothing yet; it returns the number of records copied (0 when the
// database already has a log). Call it before OpenAuditLog. The copy is
// one transaction: all of it or nothing.
func (d *DB) ImportAudit(ctx context.Context, src audit.Reader) (int, error) {
	n := 0
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM audit_records LIMIT 1)`).Scan(&have); err != nil {
			return err
		}
		if have > 0 {
			return nil
		}
		err := src.Scan(ctx, 1, func(r audit.Record) error {
			if _, err := tx.ExecContext(ctx, qAuditInsert, int64(r.Seq), r.Raw); err != nil { // #nosec G115 -- seq < 2^63
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		return src.Checkpoints(ctx, func(c audit.Checkpoint) error {
			_, err := tx.ExecContext(ctx, qAuditCheckpoint, int64(c.Seq), c.Raw) // #nosec G115 -- seq < 2^63
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: import audit log: %w", err)
	}
	return n, nil
}
