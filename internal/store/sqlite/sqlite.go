package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is an open keystile SQLite database. It is safe for concurrent use.
type DB struct {
	db   *sql.DB
	path string
	w    writer // group commit for the order path (batch.go)
	// budgets is the writer's memory of budget windows (budget.go).
	budgets *budgetCache
	// claims is the writer's memory of the claims it stored (idem.go).
	claims *claimRows
	// auditLog is the audit log kept in the database, once opened
	// (audit.go).
	auditLog atomic.Pointer[AuditLog]
	// stmts are the order path's prepared statements (hotQueries),
	// fixed after Open.
	stmts map[string]*sql.Stmt

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed, with mode 0600) the database at path and
// applies pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	// Create the file ourselves so its mode is 0600 from the first byte.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // #nosec G304 -- path is the operator's data dir
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	_ = f.Close()
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(FULL)&_pragma=secure_delete(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	d := &DB{db: db, path: path}
	if err := d.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := d.prepare(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	d.budgets = newBudgetCache(d)
	d.addParticipant(d.budgets)
	d.claims = newClaimRows()
	d.addParticipant(d.claims)
	if err := d.startWriter(ctx); err != nil {
		d.closeStmts()
		_ = db.Close()
		return nil, err
	}
	// The WAL and shared-memory files are created by SQLite with the
	// process umask: tighten them.
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); err == nil {
			_ = os.Chmod(path+suffix, 0o600)
		}
	}
	return d, nil
}

// Close closes the database. Writes already queued for group commit are
// committed (or fail) and answered first; later ones fail. Close is
// idempotent.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.stopWriter()
		d.closeStmts()
		d.closeErr = d.db.Close()
	})
	return d.closeErr
}

// Path is the database file's path.
func (d *DB) Path() string { return d.path }

// SQL exposes the underlying handle for tests in this module and for
// maintenance commands. Domain code never uses it.
func (d *DB) SQL() *sql.DB { return d.db }

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlite: migration %q: name must be NNNN_description.sql", name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlite: migration %s: versions must be 1..n without gaps", m.name)
		}
	}
	return ms, nil
}

// SchemaVersion reports the highest applied migration.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := d.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("sqlite: schema version: %w", err)
	}
	return int(v.Int64), nil
}

func (d *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := d.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	cur, err := d.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if cur > len(ms) {
		return fmt.Errorf("sqlite: database schema version %d is newer than this keystile (knows %d): upgrade keystile", cur, len(ms))
	}
	for _, m := range ms[cur:] {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("sqlite: migrate %s: %w", m.name, err)
		}
		if err := afterMigration(ctx, tx, m.version); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("sqlite: migrate %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().Unix()); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("sqlite: migrate %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", m.name, err)
		}
	}
	return nil
}

// afterMigration runs the Go part of a migration, in its transaction: data
// changes SQL cannot make exactly (decimal sums).
func afterMigration(ctx context.Context, tx *sql.Tx, version int) error {
	switch version {
	case 6:
		return backfillBudgetTotals(ctx, tx)
	}
	return nil
}

// inTx runs fn in one transaction, committing if fn returns nil. It is for
// rare writes (vault, tokens, nonces); the order path uses batch.
func (d *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
