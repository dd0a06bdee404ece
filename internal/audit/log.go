package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Keys are the log's keys, derived from the vault by the app.
type Keys struct {
	// Checkpoint signs checkpoints (Ed25519).
	Checkpoint ed25519.PrivateKey
	// Identity keys the HMAC of token ids and source addresses.
	Identity []byte
}

// PublicKey returns the key that verifies checkpoints.
func (k Keys) PublicKey() ed25519.PublicKey {
	if len(k.Checkpoint) != ed25519.PrivateKeySize {
		return nil
	}
	return k.Checkpoint.Public().(ed25519.PublicKey)
}

// Defaults of Options.
const (
	DefaultCheckpointEvery = 1000
	DefaultMaxBatch        = 512
	DefaultIntentTimeout   = 2 * time.Second
	DefaultQueueWait       = 100 * time.Millisecond
	DefaultLinger          = 5 * time.Millisecond
)

// Options configure Open. Zero values mean the defaults.
type Options struct {
	// Store keeps the log. Required.
	Store Store
	// Mirrors get a copy of each committed batch (e.g. stdout).
	Mirrors []Mirror
	// Keys sign checkpoints and key the identifier HMACs. Required.
	Keys Keys
	// CheckpointEvery is the number of records between signed
	// checkpoints; if 0, DefaultCheckpointEvery.
	CheckpointEvery int
	// MaxBatch caps the records of one group commit; if 0,
	// DefaultMaxBatch.
	MaxBatch int
	// IntentTimeout bounds how long Intent waits for durability (on top
	// of its context); if 0, DefaultIntentTimeout.
	IntentTimeout time.Duration
	// QueueWait is how long Record waits for room in a full queue before
	// it drops the record; if 0, DefaultQueueWait.
	QueueWait time.Duration
	// Linger is how long a batch of outcome records only (nobody waits
	// for them) may wait for more records before it is committed: fewer,
	// larger commits. An intent ends the wait at once. If 0,
	// DefaultLinger; negative disables it.
	Linger time.Duration
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
	// Logger receives write failures and drops; if nil, they are not
	// logged (Healthy and Stats still report them).
	Logger *slog.Logger
	// ObserveCommit, if set, is called after each successful group commit
	// with its duration and record count (metrics). It runs on the writer
	// goroutine and must not block.
	ObserveCommit func(d time.Duration, records int)
}

// Stats are counters since Open.
type Stats struct {
	Records     uint64 // records made durable
	Checkpoints uint64 // checkpoints made durable
	Batches     uint64 // successful group commits (one fsync each)
	MaxBatch    int    // largest batch committed
	Failures    uint64 // failed Appends
	Dropped     uint64 // outcome records lost (full queue, failed write, closed log)
	Queued      int    // records waiting for the writer now
}

// Log is the hash-chained, group-committed audit log. It is safe for
// concurrent use. It implements Sink.
type Log struct {
	o     Options
	queue chan *pending
	done  chan struct{}

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool

	health   atomic.Pointer[error]
	closeErr error

	records, checkpoints, batches, failures, dropped atomic.Uint64
	maxBatch                                         atomic.Int64

	chain *Chain             // writer-owned
	retry Retained[*pending] // writer-owned: outcome records of failed batches
	rec   *Recorder
}

type pending struct {
	rec  Record
	ctx  context.Context // intent only
	done chan error      // intent only
}

// Open resumes the chain from the store's head and starts the writer.
func Open(ctx context.Context, o Options) (*Log, error) {
	if o.Store == nil {
		return nil, errors.New("audit: open: no store")
	}
	if len(o.Keys.Checkpoint) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: open: checkpoint key missing or not an Ed25519 private key")
	}
	if len(o.Keys.Identity) < 16 {
		return nil, errors.New("audit: open: identity key missing or shorter than 16 bytes")
	}
	if o.CheckpointEvery < 0 || o.MaxBatch < 0 {
		return nil, errors.New("audit: open: checkpoint_every and max_batch must not be negative")
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.IntentTimeout <= 0 {
		o.IntentTimeout = DefaultIntentTimeout
	}
	if o.QueueWait <= 0 {
		o.QueueWait = DefaultQueueWait
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := o.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: open: resume: %w", err)
	}
	chain, err := NewChain(o.Keys, o.CheckpointEvery, h)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	l := &Log{o: o, queue: make(chan *pending, 4*o.MaxBatch), done: make(chan struct{}), chain: chain, rec: NewRecorder(o.Keys)}
	go l.run()
	return l, nil
}

// TokenHash returns the HMAC under which a token public id appears in
// records ("" for ""), so `audit query --token` can match it.
func (l *Log) TokenHash(id string) string { return identHash(l.o.Keys.Identity, "token", id) }

// SourceHash returns the HMAC under which a source address appears in
// records ("" for "").
func (l *Log) SourceHash(addr string) string { return identHash(l.o.Keys.Identity, "source", addr) }

// TokenHash is (*Log).TokenHash for a reader that holds the keys but no
// open log.
func (k Keys) TokenHash(id string) string { return identHash(k.Identity, "token", id) }

func identHash(key []byte, label, v string) string {
	if v == "" {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

func (l *Log) build(e Event, kind string) Record { return l.rec.Record(e, kind) }

// Intent writes an intent record and returns once it is durable. An
// error means it may not be: the caller must refuse the write operation
// (503). It waits at most Options.IntentTimeout.
func (l *Log) Intent(ctx context.Context, e Event) error {
	return l.durable(ctx, e, KindIntent)
}

// Action writes an action record (KindAction: a lever such as the kill
// switch, with Actor, Reason and Detail) and returns once it is durable,
// within Options.IntentTimeout. An error means it may not be; the lever
// itself is not undone by the caller, which reports the failure.
func (l *Log) Action(ctx context.Context, e Event) error {
	return l.durable(ctx, e, KindAction)
}

// durable queues a record of kind and waits until it is durable.
func (l *Log) durable(ctx context.Context, e Event, kind string) error {
	ctx, cancel := context.WithTimeout(ctx, l.o.IntentTimeout)
	defer cancel()
	p := &pending{rec: l.build(e, kind), ctx: ctx, done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.queue <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return fmt.Errorf("audit: %s: queue full: %w", kind, l.waitErr(ctx))
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: %s: not durable in time: %w", kind, l.waitErr(ctx))
	}
}

// waitErr explains a timed-out wait: the last write failure if there is
// one, else the context's error.
func (l *Log) waitErr(ctx context.Context) error {
	if err := l.Healthy(); err != nil {
		return err
	}
	return ctx.Err()
}

// Record implements Sink: it enqueues an outcome record without waiting
// for it to be durable. On a full queue it waits up to Options.QueueWait,
// then drops the record, counts and logs the drop.
func (l *Log) Record(ctx context.Context, e Event) {
	l.enqueue(ctx, l.build(e, KindOutcome), e.RequestID)
}

// Detect enqueues a detect record (a finding of the anomaly detector or an
// action it took) with e.Evidence, like Record: without waiting for it to
// be durable.
func (l *Log) Detect(ctx context.Context, e Event) {
	l.enqueue(ctx, l.build(e, KindDetect), e.RequestID)
}

func (l *Log) enqueue(ctx context.Context, r Record, requestID string) {
	p := &pending{rec: r}
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

func (l *Log) drop(ctx context.Context, n int, why, requestID string) {
	l.dropped.Add(uint64(max(n, 0))) // #nosec G115 -- clamped to >= 0
	l.o.Logger.LogAttrs(ctx, slog.LevelError, "audit: outcome record dropped",
		slog.String("reason", why), slog.Int("records", n), slog.String("request_id", requestID))
}

// Healthy returns nil, or the last write failure if no write has
// succeeded since.
func (l *Log) Healthy() error {
	if p := l.health.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{
		Records: l.records.Load(), Checkpoints: l.checkpoints.Load(), Batches: l.batches.Load(),
		MaxBatch: int(l.maxBatch.Load()), Failures: l.failures.Load(), Dropped: l.dropped.Load(),
		Queued: len(l.queue),
	}
}

// Close stops accepting records, writes what is queued, writes a final
// checkpoint and closes the store. If ctx ends first, the writer keeps
// draining in the background and Close returns ctx's error.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	select {
	case <-l.done:
		return l.closeErr
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

// run is the writer: it drains the queue in batches of at most MaxBatch
// and commits each batch with one Append.
func (l *Log) run() {
	defer close(l.done)
	b := Batcher[*pending]{Queue: l.queue, Max: l.o.MaxBatch, Linger: l.o.Linger, Kept: &l.retry,
		Waited: func(p *pending) bool { return p.done != nil }}
	b.Run(func(batch *[]*pending, open bool) bool {
		l.commit(*batch)
		return open
	})
	l.dropKept()
	l.closeErr = l.finish()
}

// dropKept drops (counts and logs) the records of failed batches still
// kept when the writer ends.
func (l *Log) dropKept() {
	if n := l.retry.Drain(); n > 0 {
		l.drop(context.Background(), n, "write failed; log closed before a retry succeeded", "")
	}
}

func (l *Log) commit(batch []*pending) {
	now := l.o.Now()
	recs := make([]Record, 0, len(batch))
	live := batch[:0]
	for _, p := range batch {
		if p.ctx != nil && p.ctx.Err() != nil {
			p.done <- p.ctx.Err() // the caller has given up and refused
			continue
		}
		live = append(live, p)
	}
	var cps []Checkpoint
	mark := l.chain.Head()
	for _, p := range live {
		r := p.rec
		if cp, ok := l.chain.Seal(&r, now); ok {
			cps = append(cps, cp)
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return
	}
	began := time.Now()
	err := l.o.Store.Append(context.Background(), recs, cps)
	if err == nil && l.o.ObserveCommit != nil {
		l.o.ObserveCommit(time.Since(began), len(recs))
	}
	if err != nil {
		l.chain.Reset(mark)
		err = fmt.Errorf("audit: write: %w", err)
		l.setFailure(err)
		var failed []*pending
		for _, p := range live {
			if p.done != nil {
				p.done <- err
			} else {
				failed = append(failed, p)
			}
		}
		if len(failed) > 0 {
			if over := l.retry.Keep(failed); over > 0 {
				l.drop(context.Background(), over, "write failed; retry buffer full", "")
			}
			l.o.Logger.Warn("audit: records kept to write again", slog.Int("records", len(failed)), slog.Int("kept", l.retry.Len()))
		}
		return
	}
	l.retry.Reset()
	l.health.Store(nil)
	for _, p := range live {
		if p.done != nil {
			p.done <- nil
		}
	}
	l.records.Add(uint64(len(recs)))
	l.checkpoints.Add(uint64(len(cps)))
	l.batches.Add(1)
	if int64(len(recs)) > l.maxBatch.Load() {
		l.maxBatch.Store(int64(len(recs)))
	}
	for _, m := range l.o.Mirrors {
		if err := m.Mirror(recs, cps); err != nil {
			l.o.Logger.Warn("audit: mirror failed", slog.String("error", err.Error()))
		}
	}
}

func (l *Log) setFailure(err error) {
	l.failures.Add(1)
	l.health.Store(&err)
	l.o.Logger.Error("audit: write failed", slog.String("error", err.Error()))
}

// finish writes the final checkpoint and closes the store.
func (l *Log) finish() error {
	var err error
	mark := l.chain.Head()
	if cp, ok := l.chain.Pending(l.o.Now()); ok {
		if err = l.o.Store.Append(context.Background(), nil, []Checkpoint{cp}); err != nil {
			l.chain.Reset(mark)
			err = fmt.Errorf("audit: final checkpoint: %w", err)
			l.setFailure(err)
		} else {
			l.checkpoints.Add(1)
			for _, m := range l.o.Mirrors {
				_ = m.Mirror(nil, []Checkpoint{cp})
			}
		}
	}
	if cerr := l.o.Store.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("audit: close store: %w", cerr)
	}
	return err
}

// WriterMirror copies records and checkpoints to W as canonical JSON
// lines (e.g. stdout). It is safe for concurrent use.
type WriterMirror struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriterMirror returns a Mirror writing to w.
func NewWriterMirror(w io.Writer) *WriterMirror { return &WriterMirror{w: w} }

// Mirror implements Mirror.
func (m *WriterMirror) Mirror(recs []Record, cps []Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.w.Write(appendLines(nil, recs, cps))
	return err
}

// appendLines appends recs then cps as newline-terminated canonical lines.
func appendLines(b []byte, recs []Record, cps []Checkpoint) []byte {
	for i := range recs {
		b = append(b, recs[i].Raw...)
		b = append(b, '\n')
	}
	for i := range cps {
		b = append(b, cps[i].Raw...)
		b = append(b, '\n')
	}
	return b
}

var (
	_ Sink   = (*Log)(nil)
	_ Mirror = (*WriterMirror)(nil)
)

// WriterStore is a Store that writes lines to an io.Writer (audit.sink
// stdout): nothing is read back, so every run starts a new chain, and
// durability is the reader's business.
type WriterStore struct{ m WriterMirror }

// NewWriterStore returns a Store writing canonical lines to w.
func NewWriterStore(w io.Writer) *WriterStore { return &WriterStore{m: WriterMirror{w: w}} }

// Head implements Store: always an empty log.
func (*WriterStore) Head(context.Context) (Head, error) { return Head{}, nil }

// Append implements Store.
func (s *WriterStore) Append(_ context.Context, recs []Record, cps []Checkpoint) error {
	return s.m.Mirror(recs, cps)
}

// Close implements Store; it does not close the writer.
func (*WriterStore) Close() error { return nil }

var _ Store = (*WriterStore)(nil)
