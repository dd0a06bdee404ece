package app

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/vault"
)

// Audit log files inside the data directory (audit.path overrides).
const (
	AuditDBFile    = "audit.db"
	AuditJSONLFile = "audit.jsonl"
)

// Audit sinks (audit.sink).
const (
	AuditSinkSQLite = "sqlite"
	AuditSinkJSONL  = "jsonl"
	AuditSinkStdout = "stdout"
)

// Key derivation purposes of the audit log's keys.
const (
	auditCheckpointPurpose = "audit.checkpoint.v1"
	auditIdentityPurpose   = "audit.identity.v1"
)

// AuditKeys derives the audit log's keys from the vault: the Ed25519
// checkpoint key from a 32-byte seed and the identifier HMAC key. The same
// vault always gives the same keys (rekeying does not change them).
func AuditKeys(ctx context.Context, v *vault.Vault) (audit.Keys, error) {
	if err := ctx.Err(); err != nil {
		return audit.Keys{}, err
	}
	seed, err := v.DeriveKey(auditCheckpointPurpose)
	if err != nil {
		return audit.Keys{}, fmt.Errorf("app: audit keys: %w", err)
	}
	defer seed.Wipe()
	if seed.Len() != ed25519.SeedSize {
		return audit.Keys{}, fmt.Errorf("app: audit keys: derived seed is %d bytes", seed.Len())
	}
	id, err := v.DeriveKey(auditIdentityPurpose)
	if err != nil {
		return audit.Keys{}, fmt.Errorf("app: audit keys: %w", err)
	}
	return audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(seed.Reveal()), Identity: id.Reveal()}, nil
}

// AuditSink returns the configured sink and the file it uses ("" for
// stdout), with the defaults applied.
func AuditSink(cfg *config.Config, dataDir string) (sink, path string, err error) {
	a := cfg.Audit
	sink = a.Sink
	switch sink {
	case "", AuditSinkSQLite:
		sink, path = AuditSinkSQLite, filepath.Join(dataDir, AuditDBFile)
	case AuditSinkJSONL:
		path = filepath.Join(dataDir, AuditJSONLFile)
	case AuditSinkStdout:
		return sink, "", nil
	default:
		return "", "", fmt.Errorf("app: audit.sink %q: want sqlite, jsonl or stdout", a.Sink)
	}
	if a.Path != "" {
		path = a.Path
	}
	return sink, path, nil
}

// OpenAuditLog opens the configured audit store and starts the log on it
// (the server's one writer). stdout receives the stdout sink or mirror.
func OpenAuditLog(ctx context.Context, cfg *config.Config, dataDir string, keys audit.Keys, stdout io.Writer, log *slog.Logger) (*audit.Log, error) {
	return openAuditLog(ctx, cfg, dataDir, keys, stdout, log, nil)
}

// openAuditLog is OpenAuditLog with a commit observer (metrics).
func openAuditLog(ctx context.Context, cfg *config.Config, dataDir string, keys audit.Keys, stdout io.Writer, log *slog.Logger,
	observe func(time.Duration, int)) (*audit.Log, error) {
	sink, path, err := AuditSink(cfg, dataDir)
	if err != nil {
		return nil, err
	}
	var mirrors []audit.Mirror
	switch cfg.Audit.Mirror {
	case "":
	case AuditSinkStdout:
		if sink != AuditSinkStdout {
			mirrors = append(mirrors, audit.NewWriterMirror(stdout))
		}
	default:
		return nil, fmt.Errorf("app: audit.mirror %q: want stdout or nothing", cfg.Audit.Mirror)
	}
	var st audit.Store
	switch sink {
	case AuditSinkSQLite:
		st, err = audit.OpenSQLite(ctx, path)
	case AuditSinkJSONL:
		st, err = audit.OpenJSONL(path)
	default:
		st = audit.NewWriterStore(stdout)
	}
	if err != nil {
		return nil, err
	}
	l, err := audit.Open(ctx, audit.Options{
		Store: st, Mirrors: mirrors, Keys: keys, Logger: log, ObserveCommit: observe,
		CheckpointEvery: cfg.Audit.CheckpointEvery, MaxBatch: cfg.Audit.MaxBatch,
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return l, nil
}

// AuditReader is a read-only view of the stored audit log.
type AuditReader interface {
	audit.Reader
	// Head returns the last stored record's seq and hash.
	Head(ctx context.Context) (audit.Head, error)
	// Close releases the reader.
	Close() error
}

// OpenAuditReader opens the configured audit log read-only; it is safe
// while the server writes to it.
func OpenAuditReader(ctx context.Context, cfg *config.Config, dataDir string) (AuditReader, error) {
	sink, path, err := AuditSink(cfg, dataDir)
	if err != nil {
		return nil, err
	}
	switch sink {
	case AuditSinkSQLite:
		return audit.OpenSQLiteReader(ctx, path)
	case AuditSinkJSONL:
		return audit.OpenJSONLReader(path)
	default:
		return nil, fmt.Errorf("app: audit.sink is stdout: there is no stored log to read")
	}
}
