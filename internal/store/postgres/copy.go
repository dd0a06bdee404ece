package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// coreTables are the tables of 0001_core.sql that SQLite has too, with
// the same columns, parents before children.
var coreTables = []string{
	"vault_meta", "vault_keks", "vault_system_keys", "vault_credentials", "vault_versions", "vault_fields", "vault_compromised",
	"tokens", "nonces", "mfa_enrollment", "mfa_recovery_codes", "alert_digest", "killswitch_trips", "detect_profiles", "detect_holds",
}

// CoreTables lists the vault, token, nonce, MFA, alert, kill switch and
// detector tables that a copy from SQLite (keystile migrate --from)
// moves row for row, in an order that respects foreign keys. Their
// columns are SQLite's, in SQLite's order, with the same integer
// encodings. The loss guard's amounts are not among them: SQLite keeps
// them in budget_entries under keys starting "lossguard/"; they go to
// lossguard_entries (key, at, amount).
func CoreTables() []string { return slices.Clone(coreTables) }

// ResetIdentities moves the sequence of every identity column in the
// schema past the highest value its table holds, so that rows inserted
// after a copy that kept its ids get fresh ones.
func (d *DB) ResetIdentities(ctx context.Context) error {
	rows, err := d.pool.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name`)
	if err != nil {
		return fmt.Errorf("postgres: reset identities: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var c [2]string
		err := r.Scan(&c[0], &c[1])
		return c, err
	})
	if err != nil {
		return fmt.Errorf("postgres: reset identities: %w", err)
	}
	for _, c := range cols {
		table, col := pgx.Identifier{c[0]}.Sanitize(), pgx.Identifier{c[1]}.Sanitize()
		// #nosec G202 -- quoted identifiers read from the catalog
		q := `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(` + col + `), 0) + 1, false) FROM ` + table
		if _, err := d.pool.Exec(ctx, q, table, c[1]); err != nil {
			return fmt.Errorf("postgres: reset identity %s.%s: %w", c[0], c[1], err)
		}
	}
	return nil
}
