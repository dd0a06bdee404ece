package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// sqliteSchema is the audit database's own schema (it never shares the
// main database). data holds a record's or checkpoint's canonical bytes
// exactly; seq is a copy for ordering and lookup only (Verify trusts the
// bytes, not the column).
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS audit_records (
	seq  INTEGER PRIMARY KEY,
	data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	id   INTEGER PRIMARY KEY AUTOINCREMENT,
	seq  INTEGER NOT NULL,
	data BLOB NOT NULL
);
PRAGMA user_version = 1;
`

// scanPage is how many rows one read transaction of Scan covers.
const scanPage = 4096

// SQLiteStore keeps the log in its own SQLite database (WAL,
// synchronous=FULL): each Append is one transaction. It is a Store
// (unless opened read-only) and a Reader.
type SQLiteStore struct {
	db       *sql.DB
	path     string
	readOnly bool
}

// OpenSQLite opens (creating with mode 0600) the audit database at path
// and creates its schema.
func OpenSQLite(ctx context.Context, path string) (*SQLiteStore, error) {
	if path == "" {
		return nil, errors.New("audit: sqlite: empty path")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // #nosec G304 -- operator's audit path
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	_ = f.Close()
	dsn := "file:" + path + "?_pragma=busy_timeout(1000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	s, err := openSQLite(ctx, path, dsn, false)
	if err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, sqliteSchema); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("audit: %s: create schema: %w", path, err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); err == nil {
			_ = os.Chmod(path+suffix, 0o600)
		}
	}
	return s, nil
}

// OpenSQLiteReader opens the audit database at path read-only (WAL lets
// it read while a server writes).
func OpenSQLiteReader(ctx context.Context, path string) (*SQLiteStore, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return openSQLite(ctx, path, "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)", true)
}

func openSQLite(ctx context.Context, path, dsn string, ro bool) (*SQLiteStore, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return &SQLiteStore{db: db, path: path, readOnly: ro}, nil
}

// Head implements Store.
func (s *SQLiteStore) Head(ctx context.Context) (Head, error) {
	h, err := ReadHead(ctx, s.db)
	if err != nil {
		return Head{}, fmt.Errorf("audit: %s: %w", s.path, err)
	}
	return h, nil
}

// Querier is what ReadHead reads through: a *sql.DB, *sql.Conn or *sql.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ReadHead reads the head of a log kept in the tables audit_records and
// audit_checkpoints (this package's SQLite schema, also the main
// database's): its last record, which must be intact, and whether the
// last checkpoint covers it.
func ReadHead(ctx context.Context, q Querier) (Head, error) {
	var h Head
	var seq int64
	var data []byte
	err := q.QueryRowContext(ctx, `SELECT seq, data FROM audit_records ORDER BY seq DESC LIMIT 1`).Scan(&seq, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return Head{}, nil
	}
	if err != nil {
		return Head{}, fmt.Errorf("head: %w", err)
	}
	r, err := checkRecord(data)
	if err == nil && r.Seq != uint64(seq) { // #nosec G115 -- seq is positive
		err = fmt.Errorf("row %d holds record %d", seq, r.Seq)
	}
	if err != nil {
		return Head{}, fmt.Errorf("last record: %w (run keystile audit verify)", err)
	}
	h.Seq, h.Hash = r.Seq, r.Hash
	var cp int64
	err = q.QueryRowContext(ctx, `SELECT seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&cp)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Head{}, fmt.Errorf("head: %w", err)
	}
	if uint64(cp) == h.Seq { // #nosec G115 -- seq is positive
		h.CheckpointSeq = h.Seq
	}
	return h, nil
}

// Append implements Store: one transaction, durable on commit.
func (s *SQLiteStore) Append(ctx context.Context, recs []Record, cps []Checkpoint) (err error) {
	if s.readOnly {
		return fmt.Errorf("audit: %s: opened read-only", s.path)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audit: %s: begin: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if len(recs) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO audit_records (seq, data) VALUES (?, ?)`)
		if err != nil {
			return fmt.Errorf("audit: %s: insert: %w", s.path, err)
		}
		defer st.Close()
		for i := range recs {
			if _, err := st.ExecContext(ctx, int64(recs[i].Seq), recs[i].Raw); err != nil { // #nosec G115 -- seq < 2^63
				return fmt.Errorf("audit: %s: insert record %d: %w", s.path, recs[i].Seq, err)
			}
		}
	}
	for i := range cps {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, data) VALUES (?, ?)`, int64(cps[i].Seq), cps[i].Raw); err != nil { // #nosec G115 -- seq < 2^63
			return fmt.Errorf("audit: %s: insert checkpoint %d: %w", s.path, cps[i].Seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: %s: commit: %w", s.path, err)
	}
	return nil
}

// Close implements Store.
func (s *SQLiteStore) Close() error { return s.db.Close() }

// SQL exposes the database handle for tests and maintenance.
func (s *SQLiteStore) SQL() *sql.DB { return s.db }

// Scan implements Reader. Rows are read in pages, each in its own read
// transaction, so a long scan never holds back the writer's WAL.
func (s *SQLiteStore) Scan(ctx context.Context, from uint64, fn func(Record) error) error {
	next := int64(from) // #nosec G115 -- seq < 2^63
	for {
		type row struct {
			seq  int64
			data []byte
		}
		var page []row
		rows, err := s.db.QueryContext(ctx, `SELECT seq, data FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?`, next, scanPage)
		if err != nil {
			return fmt.Errorf("audit: %s: scan: %w", s.path, err)
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.data); err != nil {
				_ = rows.Close()
				return fmt.Errorf("audit: %s: scan: %w", s.path, err)
			}
			page = append(page, r)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("audit: %s: scan: %w", s.path, err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: %s: scan: %w", s.path, err)
		}
		for _, r := range page {
			rec, _ := DecodeRecord(r.data)
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		next = page[len(page)-1].seq + 1
	}
}

// Checkpoints implements Reader.
func (s *SQLiteStore) Checkpoints(ctx context.Context, fn func(Checkpoint) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM audit_checkpoints ORDER BY id`)
	if err != nil {
		return fmt.Errorf("audit: %s: checkpoints: %w", s.path, err)
	}
	var all [][]byte
	for rows.Next() {
		var d []byte
		if err := rows.Scan(&d); err != nil {
			_ = rows.Close()
			return fmt.Errorf("audit: %s: checkpoints: %w", s.path, err)
		}
		all = append(all, d)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: %s: checkpoints: %w", s.path, err)
	}
	for _, d := range all {
		c, _ := DecodeCheckpoint(d)
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ Store  = (*SQLiteStore)(nil)
	_ Reader = (*SQLiteStore)(nil)
)
