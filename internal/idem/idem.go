package idem

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/store"
)

// Defaults of Options.
const (
	DefaultWindow         = 24 * time.Hour
	DefaultPendingTimeout = 2 * time.Minute
	DefaultMaxBody        = 256 << 10
	DefaultPruneEvery     = 10 * time.Minute
	// MaxKeyLen bounds Key.Scope and Key.Value (bytes).
	MaxKeyLen = 255
	// finishTimeout bounds the store write of Done, Unknown and Abort,
	// which run even when the caller's context is already cancelled.
	finishTimeout = 10 * time.Second
)

// Errors callers branch on.
var (
	// ErrKeyReused: the key was first used for a different order (→ 422).
	ErrKeyReused = errors.New("idem: idempotency key reused for a different order")
	// ErrPending: the key's first request may still be in flight (another
	// process, or a ticket not finished yet): try again later (→ 409).
	ErrPending = errors.New("idem: the first request with this key is still in flight")
	// ErrBadKey: an empty or over-long key (→ 400).
	ErrBadKey = errors.New("idem: empty or over-long idempotency key")
	// ErrNoSuchKey: Resolve or Reopen of a key that is not stored (or
	// expired).
	ErrNoSuchKey = errors.New("idem: no such idempotency key")
	// ErrTicketFinished: Done, Unknown or Abort on a finished ticket.
	ErrTicketFinished = errors.New("idem: ticket already finished")
	// ErrClosed: the Manager is closed.
	ErrClosed = errors.New("idem: manager closed")
)

// UnknownError reports that the outcome of the key's first request is
// unknown: the order may or may not exist at the venue. The gateway looks
// ClientOrderID up (venue.OrderLookup) and then calls Resolve or Reopen; it
// never resends blindly (→ 504 outcome_unknown while it cannot tell).
type UnknownError struct {
	ClientOrderID string
}

// Error implements error.
func (e *UnknownError) Error() string {
	return "idem: outcome of the first request with this key is unknown"
}

// Key names one idempotent request.
type Key struct {
	// Scope is the token's public id + "/" + the venue.
	Scope string
	// Value is the bot's Idempotency-Key header, or its client order id.
	Value string
}

// Replay is a stored answer, returned to repeated requests instead of
// sending them.
type Replay struct {
	Status int
	// Header is a safe subset of the answer's headers (Content-Type,
	// Content-Language).
	Header http.Header
	// Body is the answer the bot got (already scrubbed), nil when it was
	// larger than Options.MaxBody (BodyDropped).
	Body          []byte
	BodyDropped   bool
	ClientOrderID string
	VenueOrderID  string
}

// State is a stored key's state.
type State string

// States.
const (
	StatePending State = "pending" // claimed; the request may be in flight
	StateDone    State = "done"    // answered; Replay holds the answer
	StateUnknown State = "unknown" // the request may have left; no answer
)

// Record is one stored key.
type Record struct {
	Scope, Key    string
	Fingerprint   []byte
	ClientOrderID string
	State         State
	// Owner names the claim (a Manager instance and a sequence number);
	// changes are compare-and-swap on it.
	Owner   string
	Created time.Time // first claimed; the window runs from here
	Updated time.Time // last state change
	Replay  Replay    // StateDone only
}

// Store keeps idempotency records. Implementations are safe for concurrent
// use (also by several processes sharing the store); each method is one
// atomic step. Errors about a missing record wrap store.ErrNotFound, lost
// compare-and-swaps wrap store.ErrConflict.
type Store interface {
	// Get returns the record of scope and key.
	Get(ctx context.Context, scope, key string) (Record, error)
	// Claim stores rec unless a record of its scope and key created at or
	// after notBefore exists (an older one is replaced: it expired). It
	// returns the record stored under the key afterwards and whether it is
	// rec.
	Claim(ctx context.Context, rec Record, notBefore time.Time) (stored Record, claimed bool, err error)
	// Swap replaces the record of rec.Scope and rec.Key by rec if the stored
	// record's Owner is owner (store.ErrConflict otherwise, store.ErrNotFound
	// if there is none).
	Swap(ctx context.Context, rec Record, owner string) error
	// Delete removes the record of scope and key if its Owner is owner, and
	// when owner is "" every record created before before; it returns how
	// many records it removed.
	Delete(ctx context.Context, scope, key, owner string, before time.Time) (int64, error)
}

// LaterStore is a Store that can queue a Swap without the caller waiting
// for it (the SQLite store's group commit): SwapLater queues Swap(rec,
// owner) and calls done with its result once it is durable or has failed,
// on any goroutine; done must not block. DoneLater uses it so that a
// stored answer, which nobody waits for, costs no goroutine and need not
// hurry the store's next commit.
type LaterStore interface {
	Store
	SwapLater(rec Record, owner string, done func(error)) error
}

// Options configure New.
type Options struct {
	// Store is required.
	Store Store
	// Secret keys Seed (from vault.DeriveKey("idem.v1")); at least 16
	// bytes.
	Secret []byte
	// Window is how long a key is remembered; if 0, DefaultWindow.
	Window time.Duration
	// PendingTimeout is how old a pending record without a live ticket
	// must be before Reopen may take it over; if 0, DefaultPendingTimeout.
	// It must exceed the upstream's total request timeout.
	PendingTimeout time.Duration
	// MaxBody caps stored answer bodies; if 0, DefaultMaxBody.
	MaxBody int
	// PruneEvery is how often expired records are deleted (from Begin, in
	// the background); if 0, DefaultPruneEvery; negative: never (call
	// Prune).
	PruneEvery time.Duration
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
	// Logger; if nil, logs are discarded.
	Logger *slog.Logger
}

// Manager hands out tickets for idempotency keys. It is safe for
// concurrent use.
type Manager struct {
	store      Store
	secret     []byte
	window     time.Duration
	pendingTO  time.Duration
	maxBody    int
	pruneEvery time.Duration
	now        func() time.Time
	log        *slog.Logger
	instance   string
	seq        atomic.Uint64

	mu        sync.Mutex
	live      map[Key]*Ticket
	lastPrune time.Time
	pruning   bool
	closed    bool
	wg        sync.WaitGroup
}

// New returns a Manager.
func New(o Options) (*Manager, error) {
	if o.Store == nil {
		return nil, errors.New("idem: no store")
	}
	if len(o.Secret) < 16 {
		return nil, errors.New("idem: secret shorter than 16 bytes")
	}
	if o.Window < 0 || o.PendingTimeout < 0 || o.MaxBody < 0 {
		return nil, errors.New("idem: negative window, pending timeout or max body")
	}
	m := &Manager{store: o.Store, secret: bytes.Clone(o.Secret), window: o.Window, pendingTO: o.PendingTimeout,
		maxBody: o.MaxBody, pruneEvery: o.PruneEvery, now: o.Now, log: o.Logger, live: map[Key]*Ticket{}}
	if m.window == 0 {
		m.window = DefaultWindow
	}
	if m.pendingTO == 0 {
		m.pendingTO = DefaultPendingTimeout
	}
	if m.maxBody == 0 {
		m.maxBody = DefaultMaxBody
	}
	if m.pruneEvery == 0 {
		m.pruneEvery = DefaultPruneEvery
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	m.instance = hex.EncodeToString(id[:])
	m.lastPrune = m.now()
	return m, nil
}

// Close waits for a background prune and for DoneLater's writes to end.
// Live tickets stay pending in the store (a later Begin of their keys
// answers UnknownError).
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// Seed derives the seed of the client order id for k:
// HMAC-SHA256(secret, scope NUL value)[:16]. Format it with the venue's
// venue.ClientOrderIDs.NewClientOrderID.
func (m *Manager) Seed(k Key) [16]byte {
	h := hmac.New(sha256.New, m.secret)
	h.Write([]byte(k.Scope))
	h.Write([]byte{0})
	h.Write([]byte(k.Value))
	var s [16]byte
	copy(s[:], h.Sum(nil))
	return s
}

func (k Key) valid() bool {
	return k.Scope != "" && k.Value != "" && len(k.Scope) <= MaxKeyLen && len(k.Value) <= MaxKeyLen
}

// outcome is how a ticket finished.
type outcome int

const (
	outcomeRetry   outcome = iota // aborted or not claimed: waiters try again
	outcomeDone                   // replay holds the answer
	outcomeUnknown                // the request may have left
)

// Ticket is a claimed key: exactly one of Done, Unknown or Abort must be
// called when the request ends. It is safe for concurrent use.
type Ticket struct {
	m        *Manager
	key      Key
	owner    string
	rec      Record
	finished atomic.Bool
	done     chan struct{}
	left     chan struct{} // closed when the ticket leaves the live set
	outcome  outcome       // set before done is closed
	replay   Replay
	// notBefore is the age limit of the claim (Prepare).
	notBefore time.Time
}

// Key is the ticket's key.
func (t *Ticket) Key() Key { return t.key }

// ClientOrderID is the client order id the request must carry (the one
// given to Begin, or the stored one after Reopen).
func (t *Ticket) ClientOrderID() string { return t.rec.ClientOrderID }

func (m *Manager) newTicket(k Key, fp []byte, clientOrderID string, now time.Time) *Ticket {
	owner := m.instance + "." + strconv.FormatUint(m.seq.Add(1), 10)
	return &Ticket{m: m, key: k, owner: owner, done: make(chan struct{}), left: make(chan struct{}), rec: Record{
		Scope: k.Scope, Key: k.Value, Fingerprint: bytes.Clone(fp), ClientOrderID: clientOrderID,
		State: StatePending, Owner: owner, Created: now, Updated: now,
	}}
}

// register makes t the live ticket of its key, or returns the live one.
func (m *Manager) register(t *Ticket) (live *Ticket, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if l := m.live[t.key]; l != nil {
		return l, nil
	}
	m.live[t.key] = t
	return nil, nil
}

// release ends t: it leaves the live set and its waiters wake up.
func (m *Manager) release(t *Ticket, o outcome, r *Replay) {
	m.leave(t)
	t.answer(o, r)
}

// leave takes t out of the live set: later Begins of its key ask the store.
func (m *Manager) leave(t *Ticket) {
	m.mu.Lock()
	if m.live[t.key] == t {
		delete(m.live, t.key)
		close(t.left)
	}
	m.mu.Unlock()
}

// answer sets t's outcome and wakes its waiters.
func (t *Ticket) answer(o outcome, r *Replay) {
	t.outcome = o
	if r != nil {
		t.replay = *r
	}
	close(t.done)
}

// Begin claims k for an order with fingerprint (a hash of the normalized
// order: instrument, side, type, amounts) and clientOrderID:
//   - a new (or expired) key is stored as pending and a Ticket returned;
//   - a key answered within the window gives its Replay (send nothing);
//   - a key pending in this process waits (ctx-bounded) for that ticket and
//     gives its Replay or UnknownError;
//   - a key pending without a live ticket, or marked unknown, gives
//     *UnknownError;
//   - a key first used with another fingerprint gives ErrKeyReused.
func (m *Manager) Begin(ctx context.Context, k Key, fingerprint []byte, clientOrderID string) (*Ticket, *Replay, error) {
	t, rep, err := m.Prepare(ctx, k, fingerprint, clientOrderID)
	if t == nil {
		return nil, rep, err
	}
	rec, notBefore := t.Claim()
	stored, claimed, err := m.store.Claim(ctx, rec, notBefore)
	if err != nil {
		t.Forget()
		return nil, nil, fmt.Errorf("idem: claim: %w", err)
	}
	if claimed {
		m.log.Debug("idem: key claimed", "scope", k.Scope)
		return t, nil, nil
	}
	rep, err = t.Taken(stored)
	return nil, rep, err
}

// Prepare is Begin for a caller that stores the claim in a write of its
// own (the ledger: one write with the order's budget reservation and
// intent record). Like Begin it waits for a ticket of k live in this
// process and gives that ticket's Replay or *UnknownError, or
// ErrKeyReused; otherwise it returns a Ticket not yet claimed: the caller
// writes Ticket.Claim() and then calls Taken if another record was stored
// under the key, Forget if its write stored nothing, and otherwise uses
// the ticket as Begin's (Done, DoneLater, Unknown or Abort). Until then,
// twins of the key in this process wait for the ticket.
func (m *Manager) Prepare(ctx context.Context, k Key, fingerprint []byte, clientOrderID string) (*Ticket, *Replay, error) {
	if !k.valid() {
		return nil, nil, ErrBadKey
	}
	for {
		now := m.now()
		t := m.newTicket(k, fingerprint, clientOrderID, now)
		live, err := m.register(t)
		if err != nil {
			return nil, nil, err
		}
		if live != nil {
			if !bytes.Equal(live.rec.Fingerprint, fingerprint) {
				return nil, nil, ErrKeyReused
			}
			select {
			case <-live.done:
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("idem: wait for the first request: %w", ctx.Err())
			}
			switch live.outcome {
			case outcomeDone:
				r := cloneReplay(live.replay)
				return nil, &r, nil
			case outcomeUnknown:
				return nil, nil, &UnknownError{ClientOrderID: live.rec.ClientOrderID}
			}
			// Aborted or not claimed: look again once it has left
			// the live set.
			select {
			case <-live.left:
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("idem: wait for the first request: %w", ctx.Err())
			}
			continue
		}
		m.maybePrune(now)
		t.notBefore = now.Add(-m.window)
		return t, nil, nil
	}
}

// Claim is the record a caller of Prepare must store under the ticket's
// key, unless a record of the key created at or after notBefore exists (an
// older one has expired and is replaced).
func (t *Ticket) Claim() (rec Record, notBefore time.Time) {
	rec = t.rec
	rec.Fingerprint = bytes.Clone(rec.Fingerprint)
	return rec, t.notBefore
}

// Taken ends a prepared ticket whose claim found stored (another record
// under the key, within the window): it gives Begin's answer for stored —
// its Replay, *UnknownError or ErrKeyReused.
func (t *Ticket) Taken(stored Record) (*Replay, error) {
	if !t.finished.CompareAndSwap(false, true) {
		return nil, ErrTicketFinished
	}
	t.m.release(t, outcomeRetry, nil)
	_, rep, err := t.m.answer(stored, t.rec.Fingerprint)
	return rep, err
}

// Forget ends a prepared ticket whose claim was not stored (the caller's
// write was refused or failed): waiters of the key try again.
func (t *Ticket) Forget() {
	if t.finished.CompareAndSwap(false, true) {
		t.m.release(t, outcomeRetry, nil)
	}
}

// answer is Begin's result for a key stored by someone else.
func (m *Manager) answer(stored Record, fingerprint []byte) (*Ticket, *Replay, error) {
	if !bytes.Equal(stored.Fingerprint, fingerprint) {
		return nil, nil, ErrKeyReused
	}
	if stored.State == StateDone {
		r := cloneReplay(stored.Replay)
		r.ClientOrderID = stored.ClientOrderID
		return nil, &r, nil
	}
	return nil, nil, &UnknownError{ClientOrderID: stored.ClientOrderID}
}

// finishCtx keeps ctx's values but not its cancellation, bounded.
func finishCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
}

// Done stores the answer the bot got (any status) for replays; waiters get
// it at once. Call it even if the bot has gone: it runs on ctx's values but
// not its cancellation.
func (t *Ticket) Done(ctx context.Context, r Replay) error {
	if !t.finished.CompareAndSwap(false, true) {
		return ErrTicketFinished
	}
	r = t.m.sanitize(r, t.rec.ClientOrderID)
	rec := t.rec
	rec.State, rec.Updated, rec.Replay = StateDone, t.m.now(), r
	ctx, cancel := finishCtx(ctx)
	defer cancel()
	err := t.m.store.Swap(ctx, rec, t.owner)
	t.m.release(t, outcomeDone, &r)
	if err != nil {
		t.m.log.Warn("idem: answer not stored; the key will answer unknown", "scope", t.key.Scope, "err", err)
		return fmt.Errorf("idem: store answer: %w", err)
	}
	return nil
}

// DoneLater is Done without waiting for the store, for callers that answer
// the bot at once: waiters, and later Begins of the key in this process,
// get r immediately (the ticket stays live until the store holds the
// answer), and the store is written in the background. If the process
// dies before that write is durable the key stays pending in the store,
// which later Begins answer with UnknownError: the order is looked up,
// never resent blindly. A store error is logged. Close waits for the
// write.
func (t *Ticket) DoneLater(ctx context.Context, r Replay) error {
	m := t.m
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return t.Done(ctx, r)
	}
	if !t.finished.CompareAndSwap(false, true) {
		m.mu.Unlock()
		return ErrTicketFinished
	}
	m.wg.Add(1)
	m.mu.Unlock()
	r = m.sanitize(r, t.rec.ClientOrderID)
	rec := t.rec
	rec.State, rec.Updated, rec.Replay = StateDone, m.now(), r
	t.answer(outcomeDone, &r)
	stored := func(err error) {
		m.leave(t)
		if err != nil {
			m.log.Warn("idem: answer not stored; the key will answer unknown", "scope", t.key.Scope, "err", err)
		}
		m.wg.Done()
	}
	if ls, ok := m.store.(LaterStore); ok {
		if err := ls.SwapLater(rec, t.owner, stored); err == nil {
			return nil
		}
		// Not queued (a full queue): write it from a goroutine.
	}
	go func() {
		ctx, cancel := finishCtx(ctx)
		defer cancel()
		stored(m.store.Swap(ctx, rec, t.owner))
	}()
	return nil
}

// Unknown records that the request may have reached the venue without an
// answer (a timeout after the bytes left): the key is never resent blindly.
func (t *Ticket) Unknown(ctx context.Context) error {
	if !t.finished.CompareAndSwap(false, true) {
		return ErrTicketFinished
	}
	rec := t.rec
	rec.State, rec.Updated = StateUnknown, t.m.now()
	ctx, cancel := finishCtx(ctx)
	defer cancel()
	err := t.m.store.Swap(ctx, rec, t.owner)
	t.m.release(t, outcomeUnknown, nil)
	if err != nil {
		// The record stays pending, which later Begins also answer with
		// UnknownError.
		return fmt.Errorf("idem: mark unknown: %w", err)
	}
	return nil
}

// Abort forgets the key: nothing was sent (policy denied, failure before
// the request was written). Waiters try again.
func (t *Ticket) Abort(ctx context.Context) error {
	if !t.finished.CompareAndSwap(false, true) {
		return ErrTicketFinished
	}
	ctx, cancel := finishCtx(ctx)
	defer cancel()
	_, err := t.m.store.Delete(ctx, t.key.Scope, t.key.Value, t.owner, time.Time{})
	t.m.release(t, outcomeRetry, nil)
	if err != nil {
		return fmt.Errorf("idem: forget key: %w", err)
	}
	return nil
}

// Resolve records r as the answer of a key whose outcome was unknown, after
// a lookup found the order (r describes it). A key already answered is
// left as it is.
func (m *Manager) Resolve(ctx context.Context, k Key, r Replay) error {
	if !k.valid() {
		return ErrBadKey
	}
	m.mu.Lock()
	live := m.live[k]
	m.mu.Unlock()
	if live != nil {
		return ErrPending
	}
	stored, err := m.stored(ctx, k)
	if err != nil {
		return err
	}
	if stored.State == StateDone {
		return nil
	}
	rec := stored
	rec.State, rec.Updated, rec.Replay = StateDone, m.now(), m.sanitize(r, stored.ClientOrderID)
	if err := m.store.Swap(ctx, rec, stored.Owner); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%w: changed while resolving", ErrPending)
		}
		return fmt.Errorf("idem: resolve: %w", err)
	}
	return nil
}

// stored reads k's record; a missing or expired one gives ErrNoSuchKey.
func (m *Manager) stored(ctx context.Context, k Key) (Record, error) {
	rec, err := m.store.Get(ctx, k.Scope, k.Value)
	if errors.Is(err, store.ErrNotFound) || err == nil && rec.Created.Before(m.now().Add(-m.window)) {
		return Record{}, ErrNoSuchKey
	}
	if err != nil {
		return Record{}, fmt.Errorf("idem: read key: %w", err)
	}
	return rec, nil
}

// Reopen takes over a key whose outcome was unknown, after a lookup said
// definitively that the venue has no such order: it returns a Ticket for
// sending the order again with the same client order id
// (Ticket.ClientOrderID). A key answered meanwhile gives its Replay; a key
// that is pending in this process, or pending elsewhere and younger than
// Options.PendingTimeout, gives ErrPending; a missing or expired key gives
// ErrNoSuchKey (use Begin).
func (m *Manager) Reopen(ctx context.Context, k Key, fingerprint []byte) (*Ticket, *Replay, error) {
	if !k.valid() {
		return nil, nil, ErrBadKey
	}
	now := m.now()
	stored, err := m.stored(ctx, k)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case !bytes.Equal(stored.Fingerprint, fingerprint):
		return nil, nil, ErrKeyReused
	case stored.State == StateDone:
		return m.answer(stored, fingerprint)
	case now.Sub(stored.Updated) < m.pendingTO:
		// Pending: it may still be in flight in another process.
		// Unknown: a lookup's "no such order" right after the request
		// may only mean the venue has not processed it yet; resending
		// now could place it twice.
		return nil, nil, ErrPending
	}
	t := m.newTicket(k, fingerprint, stored.ClientOrderID, now)
	t.rec.Created = stored.Created
	live, err := m.register(t)
	if err != nil {
		return nil, nil, err
	}
	if live != nil {
		return nil, nil, ErrPending
	}
	if err := m.store.Swap(ctx, t.rec, stored.Owner); err != nil {
		m.release(t, outcomeRetry, nil)
		if errors.Is(err, store.ErrConflict) {
			return nil, nil, fmt.Errorf("%w: changed while reopening", ErrPending)
		}
		return nil, nil, fmt.Errorf("idem: reopen: %w", err)
	}
	return t, nil, nil
}

// Prune deletes the records older than the window now.
func (m *Manager) Prune(ctx context.Context) (int64, error) {
	n, err := m.store.Delete(ctx, "", "", "", m.now().Add(-m.window))
	if err != nil {
		return 0, fmt.Errorf("idem: prune: %w", err)
	}
	return n, nil
}

// maybePrune starts a background Prune when one is due.
func (m *Manager) maybePrune(now time.Time) {
	if m.pruneEvery < 0 {
		return
	}
	m.mu.Lock()
	if m.closed || m.pruning || now.Sub(m.lastPrune) < m.pruneEvery {
		m.mu.Unlock()
		return
	}
	m.pruning, m.lastPrune = true, now
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n, err := m.Prune(ctx)
		if err != nil {
			m.log.Warn("idem: prune failed", "err", err)
		} else if n > 0 {
			m.log.Debug("idem: pruned expired keys", "n", n)
		}
		m.mu.Lock()
		m.pruning = false
		m.mu.Unlock()
	}()
}

// replayHeaders are the answer headers kept for replays.
var replayHeaders = []string{"Content-Type", "Content-Language"}

// sanitize keeps the safe headers, caps the body and sets the client order
// id.
func (m *Manager) sanitize(r Replay, clientOrderID string) Replay {
	out := Replay{Status: r.Status, Header: http.Header{}, ClientOrderID: clientOrderID, VenueOrderID: r.VenueOrderID, BodyDropped: r.BodyDropped}
	for _, h := range replayHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			out.Header[h] = append([]string(nil), v...)
		}
	}
	if len(r.Body) > m.maxBody {
		out.BodyDropped = true
	} else if !out.BodyDropped {
		out.Body = bytes.Clone(r.Body)
	}
	return out
}

func cloneReplay(r Replay) Replay {
	r.Header = r.Header.Clone()
	r.Body = bytes.Clone(r.Body)
	return r
}
