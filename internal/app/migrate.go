package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// PostgresOptions are the pool options of the configured database
// (store.postgres), its DSN read from ref (a secret reference; "" means
// store.postgres.dsn). The DSN is in the result only: the caller keeps it
// out of every message.
func PostgresOptions(ctx context.Context, env Env, cfg *config.Config, ref string) (postgres.Options, error) {
	p := cfg.Store.Postgres
	key := "store.postgres.dsn"
	if ref == "" {
		ref = p.DSN
	} else {
		key = "--to"
	}
	if ref == "" {
		return postgres.Options{}, errors.New("store.postgres.dsn is not set: name the database in the config (a secret reference such as env:KEYSTILE_PG_DSN)")
	}
	dsn, err := ResolveStoreSecret(ctx, env, key, ref)
	if err != nil {
		return postgres.Options{}, err
	}
	defer dsn.Wipe()
	return postgres.Options{DSN: string(dsn.Reveal()), MaxConns: int32(min(max(p.MaxConns, 0), 1000)), StatementTimeout: p.StatementTimeout}, nil // #nosec G115 -- clamped to the 0..1000 the config allows
}

// MigrateResult reports keystile migrate.
type MigrateResult struct {
	// Database is host:port/database (never the DSN).
	Database string `json:"database"`
	// FromVersion is the schema version found, Version the one left.
	FromVersion int `json:"from_version"`
	Version     int `json:"version"`
	// Applied are the migrations applied now (empty: up to date).
	Applied []int `json:"applied"`
}

// MigratePostgres applies the pending migrations of the configured
// PostgreSQL database. Concurrent runs (several replicas starting, two
// operators) are safe: the migrations are applied under an advisory lock,
// each once.
func MigratePostgres(ctx context.Context, env Env, cfg *config.Config) (MigrateResult, error) {
	po, err := PostgresOptions(ctx, env, cfg, "")
	if err != nil {
		return MigrateResult{}, err
	}
	db, err := postgres.OpenForMigration(ctx, po)
	if err != nil {
		return MigrateResult{}, err
	}
	defer db.Close()
	res := MigrateResult{Database: db.Where(), Applied: []int{}}
	if res.FromVersion, err = db.SchemaVersion(ctx); err != nil {
		return res, err
	}
	applied, err := db.Migrate(ctx)
	res.Applied = append(res.Applied, applied...)
	if err != nil {
		return res, err
	}
	res.Version, err = db.SchemaVersion(ctx)
	return res, err
}

// CopyOptions configure CopySQLiteToPostgres.
type CopyOptions struct {
	// From is the data dir of the embedded install to copy.
	From string
	// To is a secret reference to the target DSN; "" means
	// store.postgres.dsn of Config.
	To     string
	Config *config.Config
}

// TableCopy is one table copied.
type TableCopy struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
}

// CopyResult reports keystile migrate --from.
type CopyResult struct {
	From     string      `json:"from"`
	Database string      `json:"database"`
	Version  int         `json:"version"`
	Tables   []TableCopy `json:"tables"`
	Rows     int64       `json:"rows"`
	// Audit is the verification of the copied audit log (nil when the
	// source kept none in its database).
	Audit *audit.Report `json:"audit,omitempty"`
}

// ErrTargetNotEmpty refuses a copy into a database that holds data.
var ErrTargetNotEmpty = errors.New("the target database already holds keystile data: copy only into an empty one")

// CopySQLiteToPostgres copies an embedded install's database into an
// empty PostgreSQL database, migrated first: table by table (the tables
// and columns have SQLite's names and encodings), every row as stored,
// in one transaction, so that nothing is decrypted — credentials stay
// sealed under the same master key, which stays on the machine. It then
// checks every table's row count, and verifies the copied audit log's
// chain and checkpoint signatures with the key derived from the vault
// (opened from the source with its master key). A server must not be
// running on the source.
func CopySQLiteToPostgres(ctx context.Context, env Env, o CopyOptions) (CopyResult, error) {
	res := CopyResult{From: o.From, Tables: []TableCopy{}}
	cfg := o.Config
	if cfg == nil {
		cfg = config.Default()
	}
	if err := CheckDataDir(o.From); err != nil {
		return res, err
	}
	sock := cfg.Admin.Socket
	if sock == "" {
		sock = filepath.Join(o.From, SocketFile)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		_ = c.Close()
		return res, fmt.Errorf("%w (%s answers)", ErrServerRunning, sock)
	}
	po, err := PostgresOptions(ctx, env, cfg, o.To)
	if err != nil {
		return res, err
	}
	src, err := sqlite.Open(ctx, filepath.Join(o.From, DBFile))
	if err != nil {
		return res, err
	}
	defer src.Close()
	dst, err := postgres.OpenForMigration(ctx, po)
	if err != nil {
		return res, err
	}
	defer dst.Close()
	res.Database = dst.Where()
	if _, err := dst.Migrate(ctx); err != nil {
		return res, err
	}
	if res.Version, err = dst.SchemaVersion(ctx); err != nil {
		return res, err
	}
	err = pgx.BeginFunc(ctx, dst.Pool(), func(tx pgx.Tx) error {
		var err error
		res.Tables, err = copyTables(ctx, src.SQL(), tx)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("migrate: copy into %s (nothing was written): %w", res.Database, err)
	}
	for _, t := range res.Tables {
		res.Rows += t.Rows
	}

	// The copy's audit log, verified with the vault's key.
	scfg := *cfg
	scfg.Store = config.Store{}
	if !AuditInDatabase(&scfg, o.From) {
		return res, nil
	}
	var n int64
	if err := dst.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_records`).Scan(&n); err != nil || n == 0 {
		return res, nil //nolint:nilerr // no audit table or no record: nothing to verify
	}
	_ = src.Close()
	sdb, v, err := OpenVault(ctx, env, o.From, &scfg, nil, nil)
	if err != nil {
		return res, fmt.Errorf("migrate: the copy is in %s, but its audit log is not verified: open the source vault: %w", res.Database, err)
	}
	defer sdb.Close()
	defer v.Close(context.WithoutCancel(ctx))
	keys, err := AuditKeys(ctx, v)
	if err != nil {
		return res, err
	}
	rep, err := audit.Verify(ctx, pgAuditReaderOn(dst), keys.PublicKey())
	if err != nil {
		return res, fmt.Errorf("migrate: the copy is in %s, but its audit log does not verify: %w", res.Database, err)
	}
	res.Audit = &rep
	return res, nil
}

// sourceQuery is how a target table's rows are read from SQLite where
// the two schemas differ; every other table is read whole (SELECT *).
var sourceQuery = map[string]string{
	// SQLite keeps a key's answer in idempotency_answers (matched by the
	// key's rowid and owner); PostgreSQL in the key's row. The columns
	// are folded as the SQLite store reads them.
	"idempotency": `SELECT i.scope, i.key, i.fingerprint, i.client_order_id,
		CASE WHEN a.claim IS NULL THEN i.state ELSE 'done' END AS state, i.owner, i.created_at,
		coalesce(a.updated_at, i.updated_at) AS updated_at, coalesce(a.status, i.status) AS status,
		coalesce(a.header, i.header) AS header, CASE WHEN a.claim IS NULL THEN i.body ELSE a.body END AS body,
		coalesce(a.body_dropped, i.body_dropped) AS body_dropped, coalesce(a.venue_order_id, i.venue_order_id) AS venue_order_id
		FROM idempotency i LEFT JOIN idempotency_answers a ON a.claim = i.rowid AND a.owner = i.owner`,
	// SQLite keeps the loss guard's amounts among the budget entries
	// (keys "lossguard/..."), with running totals; PostgreSQL in
	// lossguard_entries, without.
	"budget_entries":    `SELECT * FROM budget_entries WHERE key NOT LIKE 'lossguard/%'`,
	"budget_totals":     `SELECT * FROM budget_totals WHERE key NOT LIKE 'lossguard/%'`,
	"lossguard_entries": `SELECT id, key, at, amount FROM budget_entries WHERE key LIKE 'lossguard/%'`,
}

// folded are SQLite tables whose rows go into another table's (see
// sourceQuery).
var folded = map[string]bool{"idempotency_answers": true}

// copyTables copies every table of src (but schema_migrations) into the
// table of the same name in tx, parents before children, and checks the
// counts. A table with rows that the target lacks, or a column it lacks,
// stops the copy.
func copyTables(ctx context.Context, src *sql.DB, tx pgx.Tx) ([]TableCopy, error) {
	tables, err := sqliteTables(ctx, src)
	if err != nil {
		return nil, err
	}
	targets, err := pgColumns(ctx, tx)
	if err != nil {
		return nil, err
	}
	for t := range targets {
		if t == "schema_migrations" {
			continue
		}
		var has bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{t}.Sanitize()+`)`).Scan(&has); err != nil {
			return nil, fmt.Errorf("table %s: %w", t, err)
		}
		if has && t != "change_versions" && t != "audit_head" {
			return nil, fmt.Errorf("%w (table %s has rows)", ErrTargetNotEmpty, t)
		}
	}
	var names []string
	for _, t := range tables {
		if !folded[t] {
			names = append(names, t)
		}
	}
	for t := range sourceQuery {
		if _, ok := targets[t]; ok && !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	order, err := pgTableOrder(ctx, tx, names)
	if err != nil {
		return nil, err
	}
	var out []TableCopy
	for _, t := range order {
		q, ok := sourceQuery[t]
		if !ok {
			q = `SELECT * FROM "` + strings.ReplaceAll(t, `"`, `""`) + `"`
		}
		cols, ok := targets[t]
		n, err := copyTable(ctx, src, tx, t, q, cols, ok)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", t, err)
		}
		if ok {
			out = append(out, TableCopy{Table: t, Rows: n})
		}
	}
	return out, nil
}

// sqliteTables lists src's keystile tables.
func sqliteTables(ctx context.Context, src *sql.DB) ([]string, error) {
	rows, err := src.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// pgColumns maps each table of the target schema to its columns' types.
func pgColumns(ctx context.Context, tx pgx.Tx) (map[string]map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema()`)
	if err != nil {
		return nil, fmt.Errorf("list target columns: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var t, c, typ string
		if err := rows.Scan(&t, &c, &typ); err != nil {
			return nil, err
		}
		if out[t] == nil {
			out[t] = map[string]string{}
		}
		out[t][c] = typ
	}
	return out, rows.Err()
}

// pgTableOrder orders tables so that each comes after the tables its
// foreign keys reference in the target.
func pgTableOrder(ctx context.Context, tx pgx.Tx, tables []string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname, p.relname FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid
		WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace`)
	if err != nil {
		return nil, fmt.Errorf("foreign keys: %w", err)
	}
	defer rows.Close()
	parents := map[string][]string{}
	for rows.Next() {
		var c, p string
		if err := rows.Scan(&c, &p); err != nil {
			return nil, err
		}
		if c != p {
			parents[c] = append(parents[c], p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(t string) error
	visit = func(t string) error {
		switch state[t] {
		case 1:
			return fmt.Errorf("foreign keys form a cycle at %s", t)
		case 2:
			return nil
		}
		state[t] = 1
		for _, p := range parents[t] {
			if slices.Contains(tables, p) {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		state[t] = 2
		order = append(order, t)
		return nil
	}
	sorted := slices.Clone(tables)
	sort.Strings(sorted)
	for _, t := range sorted {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// copyBatch is the number of rows sent per round trip.
const copyBatch = 500

// copyTable copies the rows query reads from src into table, as stored,
// and returns their number; exists says the target has the table (a
// table it lacks must have no rows to copy).
func copyTable(ctx context.Context, src *sql.DB, tx pgx.Tx, table, query string, target map[string]string, exists bool) (int64, error) {
	var want int64
	if err := src.QueryRowContext(ctx, `SELECT count(*) FROM (`+query+`)`).Scan(&want); err != nil {
		return 0, err
	}
	if !exists {
		if want > 0 {
			return 0, fmt.Errorf("the target has no such table and the source has %d rows in it", want)
		}
		return 0, nil
	}
	rows, err := src.QueryContext(ctx, query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	types := make([]string, len(cols))
	names := make([]string, len(cols))
	params := make([]string, len(cols))
	for i, c := range cols {
		typ, ok := target[c]
		if !ok {
			return 0, fmt.Errorf("the target has no column %s", c)
		}
		types[i], names[i] = typ, pgx.Identifier{c}.Sanitize()
		params[i] = "$" + strconv.Itoa(i+1)
	}
	ins := `INSERT INTO ` + pgx.Identifier{table}.Sanitize() + ` (` + strings.Join(names, ", ") + `) VALUES (` + strings.Join(params, ", ") + `)`
	b := &pgx.Batch{}
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := tx.SendBatch(ctx, b).Close()
		b = &pgx.Batch{}
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		args := make([]any, len(cols))
		for i, v := range vals {
			a, err := pgValue(v, types[i])
			if err != nil {
				return n, fmt.Errorf("column %s: %w", cols[i], err)
			}
			args[i] = a
		}
		b.Queue(ins, args...)
		n++
		if b.Len() >= copyBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	if err := flush(); err != nil {
		return n, err
	}
	var got int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&got); err != nil {
		return n, err
	}
	if got != want || n != want {
		return n, fmt.Errorf("row count: source %d, copied %d, target %d", want, n, got)
	}
	// Identity columns continue after the highest id copied.
	for c := range target {
		var seq *string
		if err := tx.QueryRow(ctx, `SELECT pg_get_serial_sequence($1, $2)`, pgx.Identifier{table}.Sanitize(), c).Scan(&seq); err != nil {
			return n, err
		}
		if seq != nil && n > 0 {
			if _, err := tx.Exec(ctx, `SELECT setval($1, (SELECT max(`+pgx.Identifier{c}.Sanitize()+`) FROM `+pgx.Identifier{table}.Sanitize()+`))`, *seq); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// pgValue converts a value SQLite returned for a column of the target's
// type: the encodings are the same (integers, text, blobs), only Go's
// types differ.
func pgValue(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "bytea":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	case "text", "character varying", "jsonb", "json":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
	case "bigint", "integer", "smallint":
		switch x := v.(type) {
		case int64:
			return x, nil
		case string:
			return strconv.ParseInt(x, 10, 64)
		}
	case "boolean":
		switch x := v.(type) {
		case int64:
			return x != 0, nil
		case bool:
			return x, nil
		}
	case "numeric":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
	case "double precision", "real":
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		}
	}
	return nil, fmt.Errorf("cannot copy a %T into a %s column", v, typ)
}
