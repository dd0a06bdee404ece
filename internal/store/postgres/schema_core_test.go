package postgres_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestCoreSchemaMatchesSQLite: each core table has the same columns, in
// the same order, as SQLite's table of the same name at its latest
// migration; integers stay integers and blobs become BYTEA.
func TestCoreSchemaMatchesSQLite(t *testing.T) {
	ctx := context.Background()
	pg := openTest(t)
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	for _, table := range postgres.CoreTables() {
		rows, err := lite.SQL().QueryContext(ctx, `SELECT name, upper(type) FROM pragma_table_info(?) ORDER BY cid`, table)
		if err != nil {
			t.Fatal(err)
		}
		var liteCols, liteTypes []string
		for rows.Next() {
			var n, ty string
			if err := rows.Scan(&n, &ty); err != nil {
				t.Fatal(err)
			}
			liteCols, liteTypes = append(liteCols, n), append(liteTypes, ty)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		prows, err := pg.Pool().Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
		if err != nil {
			t.Fatal(err)
		}
		var pgCols, pgTypes []string
		for prows.Next() {
			var n, ty string
			if err := prows.Scan(&n, &ty); err != nil {
				t.Fatal(err)
			}
			pgCols, pgTypes = append(pgCols, n), append(pgTypes, ty)
		}
		if err := prows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(liteCols) == 0 || !slices.Equal(liteCols, pgCols) {
			t.Errorf("%s: SQLite columns %v, PostgreSQL %v", table, liteCols, pgCols)
			continue
		}
		for i, lt := range liteTypes {
			pt := pgTypes[i]
			ok := false
			switch {
			case strings.Contains(lt, "INT"):
				ok = pt == "integer" || pt == "bigint"
			case lt == "BLOB":
				ok = pt == "bytea"
			case lt == "TEXT":
				ok = pt == "text"
			}
			if !ok {
				t.Errorf("%s.%s: SQLite %s, PostgreSQL %s", table, liteCols[i], lt, pt)
			}
		}
	}
}
