package audit

import (
	"crypto/ed25519"
	"errors"
	"sync"
	"time"
)

// Chain is the sequencing state of one log: it gives each record its seq,
// time, prev and hash, and signs a checkpoint every CheckpointEvery
// records. Log seals with one on its writer goroutine; a store that
// writes records inside transactions of its own (the main database, where
// an order's intent record shares one transaction with the order's budget
// reservation and idempotency claim) seals with one on its single writer,
// in commit order.
//
// A Chain is not safe for concurrent use. Its head moves when a record is
// sealed, before that record is durable: a writer whose transaction does
// not commit puts the head back with Reset.
type Chain struct {
	keys  Keys
	every uint64
	head  Head
}

// NewChain returns a chain that continues after head (the zero Head for an
// empty log) and signs a checkpoint every checkpointEvery records (0:
// DefaultCheckpointEvery).
func NewChain(keys Keys, checkpointEvery int, head Head) (*Chain, error) {
	if len(keys.Checkpoint) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: chain: checkpoint key missing or not an Ed25519 private key")
	}
	if len(keys.Identity) < 16 {
		return nil, errors.New("audit: chain: identity key missing or shorter than 16 bytes")
	}
	if checkpointEvery < 0 {
		return nil, errors.New("audit: chain: checkpoint_every must not be negative")
	}
	if checkpointEvery == 0 {
		checkpointEvery = DefaultCheckpointEvery
	}
	c := &Chain{keys: keys, every: uint64(checkpointEvery)} // #nosec G115 -- checked >= 0
	c.Reset(head)
	return c, nil
}

// Keys returns the chain's keys.
func (c *Chain) Keys() Keys { return c.keys }

// Head is where the chain ends: the last sealed record.
func (c *Chain) Head() Head { return c.head }

// Reset moves the head back (or forward) to h: the records sealed after h
// were not stored.
func (c *Chain) Reset(h Head) {
	if h.Seq == 0 {
		h.Hash = zeroHash
	}
	c.head = h
}

// Seal makes rec the next record: it sets Seq, Time (now), Prev, Hash and
// Raw (the canonical bytes stores keep). When a checkpoint falls due at
// rec it returns it, signed (ok true); the caller stores it in the same
// write as rec.
func (c *Chain) Seal(rec *Record, now time.Time) (cp Checkpoint, ok bool) {
	rec.Seq, rec.Time = c.head.Seq+1, now
	rec.Raw = sealRecord(rec, c.head.Hash)
	c.head.Seq, c.head.Hash = rec.Seq, rec.Hash
	if rec.Seq%c.every == 0 {
		return c.checkpoint(now), true
	}
	return Checkpoint{}, false
}

// Pending returns a signed checkpoint of the head when the head is not
// covered by one yet (a clean stop signs the tail), else ok false.
func (c *Chain) Pending(now time.Time) (cp Checkpoint, ok bool) {
	if c.head.Seq == 0 || c.head.CheckpointSeq == c.head.Seq {
		return Checkpoint{}, false
	}
	return c.checkpoint(now), true
}

func (c *Chain) checkpoint(now time.Time) Checkpoint {
	cp := Checkpoint{Seq: c.head.Seq, Hash: c.head.Hash, Time: now}
	cp.Raw = signCheckpoint(&cp, c.keys.Checkpoint)
	c.head.CheckpointSeq = cp.Seq
	return cp
}

// Record turns e into a record of kind (KindIntent or KindOutcome), not
// yet sealed: identifiers HMAC'd under k.Identity, every string made valid
// UTF-8 and scrubbed of kst_ tokens.
func (k Keys) Record(e Event, kind string) Record {
	return record(e, kind, k.TokenHash(e.TokenID), identHash(k.Identity, "source", e.Source))
}

func record(e Event, kind, token, source string) Record {
	r := Record{
		Kind: kind, RequestID: clean(e.RequestID), Token: token, Source: source,
		Venue: clean(e.Venue), Operation: clean(e.Operation), Method: clean(e.Method), Path: clean(e.Path),
		Instrument: clean(e.Instrument), Side: clean(e.Side), Type: clean(e.OrderType), Quantity: clean(e.Quantity),
		Price: clean(e.Price), Notional: clean(e.Notional), ClientOrderID: clean(e.ClientOrderID),
		Decision: clean(e.Decision), Rule: clean(e.Rule), Status: e.Status, Upstream: e.Upstream,
		VenueOrderID: clean(e.VenueOrderID), Latency: e.Latency, Error: clean(e.Error),
		Actor: clean(e.Actor), Reason: clean(e.Reason), Detail: clean(e.Detail),
	}
	if kind == KindDetect {
		r.Evidence = clean(e.Evidence) // detect records only: others' bytes stay as they were
	}
	return r
}

// Recorder is Keys.Record with the HMACs of recent identifiers remembered:
// a bot's token id and source address repeat on every request, and their
// HMACs cost more than the rest of a record. It is safe for concurrent
// use; it keeps at most 4096 identifiers (public ids and addresses, no
// secrets) and starts afresh when full.
type Recorder struct {
	keys Keys
	mu   sync.Mutex
	ids  map[string]string // label NUL value → hex HMAC
}

// maxRecorderIDs bounds Recorder's memory.
const maxRecorderIDs = 4096

// NewRecorder returns a Recorder for k.
func NewRecorder(k Keys) *Recorder { return &Recorder{keys: k, ids: map[string]string{}} }

// Record implements Keys.Record.
func (r *Recorder) Record(e Event, kind string) Record {
	return record(e, kind, r.hash("token", e.TokenID), r.hash("source", e.Source))
}

func (r *Recorder) hash(label, v string) string {
	if v == "" {
		return ""
	}
	k := label + "\x00" + v
	r.mu.Lock()
	h, ok := r.ids[k]
	r.mu.Unlock()
	if ok {
		return h
	}
	h = identHash(r.keys.Identity, label, v)
	r.mu.Lock()
	if len(r.ids) >= maxRecorderIDs {
		clear(r.ids)
	}
	r.ids[k] = h
	r.mu.Unlock()
	return h
}
