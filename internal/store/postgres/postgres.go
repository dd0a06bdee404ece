package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keystile/keystile/internal/audit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockID is the advisory lock key held while migrating
// ("keystile" in ASCII, as an int64).
const migrationLockID int64 = 0x6b65797374696c65

// Options configure Open.
type Options struct {
	// DSN is a libpq connection string or postgres:// URL. TLS is set
	// there (sslmode=verify-full, sslrootcert=...).
	DSN string
	// MaxConns caps the pool (0: pgx's default, max(4, CPUs)).
	MaxConns int32
	// StatementTimeout bounds each statement server-side (0: 30 s).
	StatementTimeout time.Duration
	// Migrate applies pending migrations on Open. When false, Open fails
	// if the schema is older than this keystile (run `keystile migrate`).
	Migrate bool
}

// DB is an open keystile PostgreSQL database. It is safe for concurrent
// use.
type DB struct {
	pool *pgxpool.Pool
	// where names the server for errors and logs: host:port/database,
	// never the password.
	where string

	// intents is the audit log kept in the database, once opened
	// (audit.go); the ledger (ledger.go) writes an order's intent record
	// inside its own transaction through it.
	intentsMu sync.RWMutex
	intents   intentLog

	// ledgerQ queues the ledger's writes for its group commit (batch.go).
	ledgerQ ledgerQueue
}

// intentLog seals an intent record into the audit chain kept in the
// database, inside the caller's transaction.
type intentLog interface {
	// appendIntent seals e as an intent record at the end of the chain,
	// inside tx: it is durable when tx commits and absent when tx rolls
	// back. after, when not nil, is called once the transaction has
	// ended, with whether it committed (mirrors, metrics, health).
	appendIntent(ctx context.Context, tx pgx.Tx, e audit.Event) (after func(committed bool), err error)
	// checkIntent tells, without the database, whether e can be
	// appended; a refusal fails e's write alone. The ledger's batch asks
	// it for each write that fits its budgets, before claiming its key.
	checkIntent(e audit.Event) error
	// appendIntents is appendIntent for the intents of a ledger batch, in
	// order, under one lock of the chain's head; after is called once.
	// The ledger appends through it (appendIntent: one intent, as the
	// audit log's tests drive it).
	appendIntents(ctx context.Context, tx pgx.Tx, es []audit.Event) (after func(committed bool), err error)
}

func (d *DB) setIntentLog(l intentLog) {
	d.intentsMu.Lock()
	d.intents = l
	d.intentsMu.Unlock()
}

// intentLog is the audit log kept in the database, or nil.
func (d *DB) intentLog() intentLog {
	d.intentsMu.RLock()
	defer d.intentsMu.RUnlock()
	return d.intents
}

// Open connects to the database and applies or checks migrations.
func Open(ctx context.Context, o Options) (*DB, error) {
	d, err := connect(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.Migrate {
		if _, err := d.Migrate(ctx); err != nil {
			d.pool.Close()
			return nil, err
		}
	} else if err := d.checkSchema(ctx); err != nil {
		d.pool.Close()
		return nil, err
	}
	return d, nil
}

// OpenForMigration connects without checking the schema version: for
// `keystile migrate`, which then calls Migrate.
func OpenForMigration(ctx context.Context, o Options) (*DB, error) {
	return connect(ctx, o)
}

func connect(ctx context.Context, o Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx's parse errors may quote the DSN: keep them out.
		return nil, errors.New("postgres: the DSN does not parse (expected postgres://user@host:port/db?... or key=value pairs)")
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	st := o.StatementTimeout
	if st <= 0 {
		st = 30 * time.Second
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(st.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["application_name"] = "keystile"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect %s: %w", where, scrubErr(err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect %s: %w", where, scrubErr(err))
	}
	return &DB{pool: pool, where: where}, nil
}

// Close closes the pool.
func (d *DB) Close() error {
	d.pool.Close()
	return nil
}

// Where names the server (host:port/database) for messages.
func (d *DB) Where() string { return d.where }

// Pool exposes the pool for tests in this module and for maintenance
// commands (migrate --from). Domain code never uses it.
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// Ping checks the server answers (readiness).
func (d *DB) Ping(ctx context.Context) error {
	if err := d.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %s: %w", d.where, scrubErr(err))
	}
	return nil
}

// scrubErr drops what an error may quote of the DSN: a parse error
// quotes the string (and so a password in it); connect errors name host
// and user only.
func scrubErr(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string")
	}
	return err
}

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("postgres: migration %q: name must be NNNN_description.sql", name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, fmt.Errorf("postgres: read migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: versions must be 1..n without gaps", m.name)
		}
	}
	return ms, nil
}

// Latest is the schema version this keystile knows.
func Latest() int {
	ms, err := loadMigrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// SchemaVersion reports the highest applied migration (0 for an empty
// database).
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := d.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v *int64
	if err := d.pool.QueryRow(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return int(*v), nil
}

func (d *DB) checkSchema(ctx context.Context) error {
	cur, err := d.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if latest := Latest(); cur != latest {
		if cur > latest {
			return fmt.Errorf("postgres: %s: schema version %d is newer than this keystile (knows %d): upgrade keystile", d.where, cur, latest)
		}
		return fmt.Errorf("postgres: %s: schema version %d, this keystile needs %d: run `keystile migrate` (or serve --migrate)", d.where, cur, latest)
	}
	return nil
}

// Migrate applies pending migrations, each in its own transaction, while
// holding a session advisory lock: replicas migrating at once wait for
// each other and each migration is applied once. It returns the versions
// it applied.
func (d *DB) Migrate(ctx context.Context) ([]int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate %s: %w", d.where, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		return nil, fmt.Errorf("postgres: migrate %s: lock: %w", d.where, err)
	}
	defer func() {
		// A fresh context: the lock must go even when ctx is done.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockID)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("postgres: migrate %s: %w", d.where, err)
	}
	cur, err := d.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	if cur > len(ms) {
		return nil, fmt.Errorf("postgres: %s: schema version %d is newer than this keystile (knows %d): upgrade keystile", d.where, cur, len(ms))
	}
	var applied []int
	for _, m := range ms[cur:] {
		err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations(version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("postgres: migrate %s: %s: %w", d.where, m.name, err)
		}
		applied = append(applied, m.version)
	}
	return applied, nil
}

// inTx runs fn in one transaction, committing if fn returns nil.
func (d *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, fn)
}

// TestSchema makes a fresh, empty schema on the server at dsn and returns
// a DSN whose search_path is that schema, and a function that drops it.
// Tests use it so that each runs on its own tables on a shared server.
func TestSchema(ctx context.Context, dsn string) (string, func(), error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	name := "kst_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: test schema: %w", scrubErr(err))
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", nil, fmt.Errorf("postgres: test schema: %w", err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if !strings.Contains(dsn, "://") {
		return "", nil, errors.New("postgres: test schema: use a postgres:// URL")
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(dctx, dsn)
		if err != nil {
			return
		}
		_, _ = c.Exec(dctx, "DROP SCHEMA "+name+" CASCADE")
		_ = c.Close(dctx)
	}
	return dsn + sep + "search_path=" + name, drop, nil
}
