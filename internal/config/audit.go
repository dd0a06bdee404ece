package config

import "time"

// Audit configures the audit log (audit:). Zero values mean the defaults.
type Audit struct {
	// Sink (audit.sink) is where the hash-chained log is kept: sqlite
	// (default: <data_dir>/audit.db), jsonl (a file, fsynced) or stdout
	// (JSON lines on standard output; not verifiable after a restart).
	Sink string `yaml:"sink"`
	// Path (audit.path) is the file for sqlite and jsonl. "" means
	// <data_dir>/audit.db or <data_dir>/audit.jsonl.
	Path string `yaml:"path"`
	// CheckpointEvery (audit.checkpoint_every) is the number of records
	// between signed checkpoints. Default 1000.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// MaxBatch (audit.max_batch) caps the records written in one group
	// commit. Default 512.
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
