package config

import "time"

// Audit configures the audit log (audit:). Zero values mean the defaults.
type Audit struct {
	// Sink (audit.sink) is where the hash-chained log is kept: sqlite
	// (default: in the main database, keystile.db), jsonl (a file,
	// fsynced) or stdout (JSON lines on standard output; not verifiable
	// after a restart).
	Sink string `yaml:"sink"`
	// Path (audit.path) is the file for sqlite and jsonl. "" means the
	// main database for sqlite (an order's intent record then shares one
	// write with its budget reservation and idempotency claim) and
	// <data_dir>/audit.jsonl for jsonl.
	Path string `yaml:"path"`
	// CheckpointEvery (audit.checkpoint_every) is the number of records
	// between signed checkpoints. Default 1000.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// MaxBatch (audit.max_batch) caps the records written in one group
	// commit of a log kept outside the main database. Default 512. (The
	// main database's writer commits up to 256 writes at once.)
	MaxBatch int `yaml:"max_batch"`
	// Mirror (audit.mirror) optionally copies every record to stdout
	// ("stdout") as well. Default "" (none).
	Mirror string `yaml:"mirror"`
}

// Idempotency configures order de-duplication (idempotency:).
type Idempotency struct {
	// Window (idempotency.window) is how long a key or client order id is
	// remembered. Default 24h.
	Window time.Duration `yaml:"window"`
}
