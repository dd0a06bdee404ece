package app

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// Audit log files inside the data directory (audit.path overrides). The
// default log (sink sqlite, no path) is kept in the main database
// (DBFile); AuditDBFile is where versions before it kept it, imported at
// the first start.
const (
	AuditDBFile    = "audit.db"
	AuditJSONLFile = "audit.jsonl"
)

// Audit sinks (audit.sink).
const (
	AuditSinkSQLite = "sqlite"
	AuditSinkJSONL  = "jsonl"
	AuditSinkStdout = "stdout"
	// AuditSinkPostgres is audit.sink sqlite (the default) without a
	// path of its own when the store is PostgreSQL: the log is kept in
	// that database, one chain for every replica.
	AuditSinkPostgres = "postgres"
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
// stdout), with the defaults applied: sink sqlite without a path keeps
// the log in the main database, DBFile (see AuditInDatabase).
func AuditSink(cfg *config.Config, dataDir string) (sink, path string, err error) {
	a := cfg.Audit
	sink = a.Sink
	switch sink {
	case "", AuditSinkSQLite:
		if cfg.Store.Shared() && a.Path == "" {
			return AuditSinkPostgres, "", nil
		}
		sink, path = AuditSinkSQLite, filepath.Join(dataDir, DBFile)
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

// AuditInDatabase reports whether the audit log is kept in the main
// database (sink sqlite without a path of its own, the default; with
// store.postgres, that database): then an order's intent record is
// written in the same transaction as its budget reservation and
// idempotency claim.
func AuditInDatabase(cfg *config.Config, dataDir string) bool {
	sink, path, err := AuditSink(cfg, dataDir)
	return err == nil && (sink == AuditSinkPostgres || sink == AuditSinkSQLite && sameFile(path, filepath.Join(dataDir, DBFile)))
}

func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// AuditLog is the server's audit log: *sqlite.AuditLog or
// *postgres.AuditLog in the main database, or *audit.Log on a store of
// its own.
type AuditLog interface {
	audit.Sink
	// Intent writes an intent record and returns once it is durable.
	Intent(ctx context.Context, e audit.Event) error
	Stats() audit.Stats
	// Healthy is nil, or the last write failure.
	Healthy() error
	// Close signs the final checkpoint and stops the log.
	Close(ctx context.Context) error
	// TokenHash is the HMAC'd form of a token id the records carry, to
	// search the log by token.
	TokenHash(id string) string
	// Action writes an action record (a lever: kill switch, cancel-all)
	// and returns once it is durable.
	Action(ctx context.Context, e audit.Event) error
	// Detect queues a detect record (a finding or a detector's action)
	// without waiting.
	Detect(ctx context.Context, e audit.Event)
}

var (
	_ AuditLog = (*audit.Log)(nil)
	_ AuditLog = (*sqlite.AuditLog)(nil)
)

// OpenAuditLog opens the configured audit log on its own (no server: the
// log in the main database opens that database, and Close closes it).
// stdout receives the stdout sink or mirror.
func OpenAuditLog(ctx context.Context, cfg *config.Config, dataDir string, keys audit.Keys, stdout io.Writer, log *slog.Logger) (AuditLog, error) {
	if !AuditInDatabase(cfg, dataDir) {
		return openAuditLog(ctx, cfg, dataDir, keys, stdout, log, nil)
	}
	db, err := OpenStores(ctx, Env{}, cfg, dataDir, StoreOptions{Create: true})
	if err != nil {
		return nil, err
	}
	l, err := db.openAudit(ctx, auditArgs{cfg: cfg, dataDir: dataDir, keys: keys, stdout: stdout, log: log})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return closingAudit{AuditLog: l, db: db}, nil
}

// closingAudit closes the database it opened with the log.
type closingAudit struct {
	AuditLog
	db Stores
}

func (c closingAudit) Close(ctx context.Context) error {
	err := c.AuditLog.Close(ctx)
	if cerr := c.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// auditMirrors are the configured mirrors (audit.mirror).
func auditMirrors(cfg *config.Config, sink string, stdout io.Writer) ([]audit.Mirror, error) {
	switch cfg.Audit.Mirror {
	case "":
		return nil, nil
	case AuditSinkStdout:
		if sink != AuditSinkStdout {
			return []audit.Mirror{audit.NewWriterMirror(stdout)}, nil
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("app: audit.mirror %q: want stdout or nothing", cfg.Audit.Mirror)
	}
}

// openDatabaseAudit starts the audit log kept in db, first importing the
// log of an earlier version's audit.db if db holds none yet.
func openDatabaseAudit(ctx context.Context, db *sqlite.DB, cfg *config.Config, dataDir string, keys audit.Keys, stdout io.Writer,
	log *slog.Logger, observe func(time.Duration, int)) (*sqlite.AuditLog, error) {
	mirrors, err := auditMirrors(cfg, AuditSinkSQLite, stdout)
	if err != nil {
		return nil, err
	}
	legacy := filepath.Join(dataDir, AuditDBFile)
	if _, err := os.Stat(legacy); err == nil {
		r, err := audit.OpenSQLiteReader(ctx, legacy)
		if err != nil {
			return nil, fmt.Errorf("app: import %s: %w", legacy, err)
		}
		n, err := db.ImportAudit(ctx, r)
		_ = r.Close()
		if err != nil {
			return nil, fmt.Errorf("app: import %s (check it with audit.path set to it and keystile audit verify, or move it away): %w", legacy, err)
		}
		if n > 0 && log != nil {
			log.Info("keystile: audit log imported into the main database; the old file is no longer written",
				"from", legacy, "records", n)
		}
	}
	return db.OpenAuditLog(ctx, sqlite.AuditOptions{Keys: keys, CheckpointEvery: cfg.Audit.CheckpointEvery, Mirrors: mirrors,
		Logger: log, ObserveCommit: observe})
}

// openAuditLog opens an audit log on a store of its own (not the main
// database), with a commit observer (metrics).
func openAuditLog(ctx context.Context, cfg *config.Config, dataDir string, keys audit.Keys, stdout io.Writer, log *slog.Logger,
	observe func(time.Duration, int)) (*audit.Log, error) {
	sink, path, err := AuditSink(cfg, dataDir)
	if err != nil {
		return nil, err
	}
	mirrors, err := auditMirrors(cfg, sink, stdout)
	if err != nil {
		return nil, err
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

// auditReader reads the server's audit log: on the server's own pool
// when it is kept in PostgreSQL.
func (s *Server) auditReader(ctx context.Context) (AuditReader, error) {
	if sink, _, err := AuditSink(s.cfg, s.dataDir); err == nil && sink == AuditSinkPostgres && s.db != nil {
		return s.db.auditReader(ctx)
	}
	return OpenAuditReader(ctx, s.cfg, s.dataDir)
}

// OpenAuditReader opens the configured audit log read-only; it is safe
// while the server writes to it. For the log in the main database, a data
// dir upgraded from a version that kept it in audit.db, whose server has
// not started since (it imports the file), is read from that file.
func OpenAuditReader(ctx context.Context, cfg *config.Config, dataDir string) (AuditReader, error) {
	return OpenAuditReaderEnv(ctx, Env{}, cfg, dataDir)
}

// OpenAuditReaderEnv is OpenAuditReader reading store.postgres.dsn's
// reference through env.
func OpenAuditReaderEnv(ctx context.Context, env Env, cfg *config.Config, dataDir string) (AuditReader, error) {
	sink, path, err := AuditSink(cfg, dataDir)
	if err != nil {
		return nil, err
	}
	switch sink {
	case AuditSinkPostgres:
		return openPostgresAuditReader(ctx, env, cfg)
	case AuditSinkSQLite:
		if AuditInDatabase(cfg, dataDir) {
			return openDatabaseAuditReader(ctx, path, filepath.Join(dataDir, AuditDBFile))
		}
		return audit.OpenSQLiteReader(ctx, path)
	case AuditSinkJSONL:
		return audit.OpenJSONLReader(path)
	default:
		return nil, fmt.Errorf("app: audit.sink is stdout: there is no stored log to read")
	}
}

func openDatabaseAuditReader(ctx context.Context, path, legacy string) (AuditReader, error) {
	r, err := audit.OpenSQLiteReader(ctx, path)
	if err != nil {
		return nil, err
	}
	h, herr := r.Head(ctx)
	if _, lerr := os.Stat(legacy); lerr == nil && (herr != nil && strings.Contains(herr.Error(), "no such table") || herr == nil && h.Seq == 0) {
		_ = r.Close()
		return audit.OpenSQLiteReader(ctx, legacy)
	}
	return r, nil
}

// AuditLogStored reports whether the configured audit log holds records
// (a stored log to verify).
func AuditLogStored(ctx context.Context, cfg *config.Config, dataDir string) bool {
	sink, path, err := AuditSink(cfg, dataDir)
	if err != nil || sink == AuditSinkStdout {
		return false
	}
	if sink == AuditSinkPostgres {
		r, err := OpenAuditReader(ctx, cfg, dataDir)
		if err != nil {
			return true // let the check report why it cannot be read
		}
		defer r.Close()
		h, err := r.Head(ctx)
		return err != nil || h.Seq > 0
	}
	if _, err := os.Stat(path); err != nil {
		return false
	}
	if sink != AuditSinkSQLite {
		return true
	}
	r, err := OpenAuditReader(ctx, cfg, dataDir)
	if err != nil {
		return true // there is a file: let the check report why it cannot be read
	}
	defer r.Close()
	h, err := r.Head(ctx)
	return err != nil || h.Seq > 0
}
