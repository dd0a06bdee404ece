package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/secretref"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
	"github.com/keystile/keystile/internal/venue/kraken"
)

// Stores is the database serve and the offline commands run on: the
// embedded SQLite database of the data dir (the default, one server) or a
// shared PostgreSQL database (store.postgres, several replicas). Each
// accessor is the store contract a domain package declares; behind each,
// only sealed bytes and digests are kept (the master key stays on the
// machine: key file or keyring). Implementations are safe for concurrent
// use; Close releases the database once nothing uses it.
//
// The interface is sealed (its unexported methods): only this package's
// two backends implement it.
type Stores interface {
	Vault() vault.Store
	Tokens() token.Store
	Nonces() kraken.NonceStore
	MFA() mfa.Store
	Alerts() alert.DigestStore
	Trips() killswitch.Store
	LossLedger() killswitch.Ledger
	Detect() DetectStore
	Budgets() policy.BudgetStore
	Idempotency() idem.Store
	Ledger() ledger.Store
	Close() error

	// Backend is BackendSQLite or BackendPostgres.
	Backend() string
	// ping checks the database answers (readiness).
	ping(ctx context.Context) error
	// status describes the database for keystile status.
	status(ctx context.Context) *admin.StoreStatus
	// openAudit starts the audit log kept in this database (the one the
	// ledger writes an order's intent record into, in its transaction).
	openAudit(ctx context.Context, a auditArgs) (AuditLog, error)
	// auditReader reads the audit log kept in this database (PostgreSQL
	// only: SQLite's is read on a connection of its own).
	auditReader(ctx context.Context) (AuditReader, error)
}

// DetectStore keeps the detector's profiles and holds.
type DetectStore interface {
	detect.ProfileStore
	detect.HoldStore
}

// Store backends (Stores.Backend).
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// auditArgs are what opening the audit log in the database takes.
type auditArgs struct {
	cfg     *config.Config
	dataDir string
	keys    audit.Keys
	stdout  io.Writer
	log     *slog.Logger
	observe func(time.Duration, int)
}

// StoreOptions configure OpenStores.
type StoreOptions struct {
	// Migrate applies pending PostgreSQL migrations (serve --migrate,
	// store.postgres.migrate_on_start, init). Without it an older schema
	// is refused. SQLite always migrates.
	Migrate bool
	// Create allows the SQLite database file not to exist yet (init).
	Create bool
}

// OpenStores opens the configured database: PostgreSQL when
// store.postgres.dsn is set (its DSN read from the secret reference,
// never from argv), else <dataDir>/keystile.db.
func OpenStores(ctx context.Context, env Env, cfg *config.Config, dataDir string, o StoreOptions) (Stores, error) {
	if cfg != nil && cfg.Store.Shared() {
		return openPostgresStores(ctx, env, cfg, o)
	}
	path := filepath.Join(dataDir, DBFile)
	if !o.Create {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w %s holds no keystile database (run `keystile init --data-dir %s`)", ErrDataDir, dataDir, dataDir)
		}
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return &sqliteStores{db: db}, nil
}

// ResolveStoreSecret reads a store secret reference (store.postgres.dsn,
// store.redis.password_ref): env:, file:, dotenv: or keyring:. Errors name
// the reference, never the value.
func ResolveStoreSecret(ctx context.Context, env Env, key, ref string) (secret.Value, error) {
	r, err := secretref.Parse(ref)
	if err != nil {
		return secret.Value{}, fmt.Errorf("%s: not a secret reference", key)
	}
	if r.Scheme == secretref.SchemeVault {
		return secret.Value{}, fmt.Errorf("%s: a vault: reference cannot open the store the vault is in", key)
	}
	rv := &secretref.Resolver{Getenv: env.Getenv, Keyring: env.keyring()}
	v, err := rv.Resolve(ctx, r)
	if err != nil {
		return secret.Value{}, fmt.Errorf("%s: %w", key, err)
	}
	return v, nil
}

// sqliteStores is the embedded SQLite database.
type sqliteStores struct{ db *sqlite.DB }

func (s *sqliteStores) Vault() vault.Store            { return s.db.Vault() }
func (s *sqliteStores) Tokens() token.Store           { return s.db.Tokens() }
func (s *sqliteStores) Nonces() kraken.NonceStore     { return s.db.Nonces() }
func (s *sqliteStores) MFA() mfa.Store                { return s.db.MFA() }
func (s *sqliteStores) Alerts() alert.DigestStore     { return s.db.Alerts() }
func (s *sqliteStores) Trips() killswitch.Store       { return s.db.Trips() }
func (s *sqliteStores) LossLedger() killswitch.Ledger { return s.db.LossLedger() }
func (s *sqliteStores) Detect() DetectStore           { return s.db.Detect() }
func (s *sqliteStores) Budgets() policy.BudgetStore   { return s.db.Budgets() }
func (s *sqliteStores) Idempotency() idem.Store       { return s.db.Idempotency() }
func (s *sqliteStores) Ledger() ledger.Store          { return s.db.Ledger() }
func (s *sqliteStores) Close() error                  { return s.db.Close() }
func (s *sqliteStores) Backend() string               { return BackendSQLite }

func (s *sqliteStores) ping(ctx context.Context) error { return s.db.SQL().PingContext(ctx) }

func (s *sqliteStores) status(ctx context.Context) *admin.StoreStatus {
	st := &admin.StoreStatus{Backend: BackendSQLite, Path: s.db.Path()}
	var errs []error
	if fi, err := os.Stat(st.Path); err == nil {
		st.SizeBytes = fi.Size()
	} else {
		errs = append(errs, err)
	}
	if fi, err := os.Stat(st.Path + "-wal"); err == nil {
		st.WALBytes = fi.Size()
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	v, err := s.db.SchemaVersion(ctx)
	st.SchemaVersion = v
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		st.Error = err.Error()
	}
	return st
}

func (s *sqliteStores) openAudit(ctx context.Context, a auditArgs) (AuditLog, error) {
	return openDatabaseAudit(ctx, s.db, a.cfg, a.dataDir, a.keys, a.stdout, a.log, a.observe)
}

func (s *sqliteStores) auditReader(ctx context.Context) (AuditReader, error) {
	return audit.OpenSQLiteReader(ctx, s.db.Path())
}

var _ Stores = (*sqliteStores)(nil)
