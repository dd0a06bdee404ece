package audit

import (
	"context"
	"errors"
)

// Head is where a stored log ends: its last record and, if the last
// stored checkpoint is for that record, that checkpoint's seq. The zero
// Head (Seq 0) is an empty log.
type Head struct {
	Seq           uint64 // last record's seq; 0 when empty
	Hash          string // last record's hash; "" when empty
	CheckpointSeq uint64 // seq of the last checkpoint stored (0 if unknown or none)
}

// Store keeps the log durably. Log calls it from one goroutine at a time.
type Store interface {
	// Head returns the end of the stored log; Open resumes the chain
	// from it. A store whose last record is unreadable returns an error.
	Head(ctx context.Context) (Head, error)
	// Append stores recs (consecutive, canonical bytes in Raw) and cps
	// (canonical bytes in Raw) atomically: when it returns nil they are
	// durable (fsynced); on error none of them is considered stored and
	// the store is ready for a retry of the same seqs.
	Append(ctx context.Context, recs []Record, cps []Checkpoint) error
	// Close releases the store.
	Close() error
}

// Reader reads a stored log, for Verify and the CLI. It is safe to use
// while a Log appends to the same store from another process.
type Reader interface {
	// Scan calls fn for each stored record with seq >= from, in storage
	// order, with Raw set; fields are decoded when Raw is well formed
	// (Hash is "" when it is not). fn's error stops the scan and is
	// returned.
	Scan(ctx context.Context, from uint64, fn func(Record) error) error
	// Checkpoints calls fn for each stored checkpoint, in storage order,
	// with Raw set.
	Checkpoints(ctx context.Context, fn func(Checkpoint) error) error
}

// Mirror receives a copy of every committed batch (records, then the
// checkpoints), after it is durable. Mirrors are not durable; an error is
// logged and otherwise ignored.
type Mirror interface {
	Mirror(recs []Record, cps []Checkpoint) error
}

// ErrClosed is returned by Intent after Close.
var ErrClosed = errors.New("audit: log is closed")
