package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/secretref"
)

func newMigrate(g *globals) *cobra.Command {
	var jsonOut bool
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply PostgreSQL migrations, or copy an embedded install into PostgreSQL",
		Long: `migrate applies the pending schema migrations of the PostgreSQL database named by
store.postgres.dsn (a secret reference), under an advisory lock: replicas or operators running it
at once wait for each other and each migration is applied once. It prints the versions applied.

migrate --from sqlite:DIR --to postgres copies the embedded install in DIR (its keystile.db) into
an empty PostgreSQL database, migrated first: table by table, rows as stored, in one transaction.
Nothing is decrypted: credentials stay sealed under the same master key, which stays on this
machine (copy the key file to each replica). It then checks every table's row count and verifies
the copied audit log with the key derived from the vault. --to postgres uses store.postgres.dsn;
--to also takes a secret reference (env:VAR, file:PATH, dotenv:PATH#KEY, keyring:SERVICE/USER),
never the DSN itself. Stop the server on DIR first.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.resolve()
			if err != nil {
				return err
			}
			if from == "" {
				if to != "" {
					return usagef("migrate: --to goes with --from sqlite:DIR")
				}
				if !cfg.Store.Shared() {
					return usagef("migrate: store.postgres.dsn is not set: keystile uses its embedded SQLite database, which migrates itself")
				}
				res, err := app.MigratePostgres(cmd.Context(), g.env(), cfg)
				if err != nil {
					return err
				}
				if jsonOut {
					return g.printJSON(res)
				}
				if len(res.Applied) == 0 {
					fmt.Fprintf(g.io.Stdout, "%s: schema version %d, up to date\n", res.Database, res.Version)
					return nil
				}
				fmt.Fprintf(g.io.Stdout, "%s: schema version %d -> %d (applied %s)\n", res.Database, res.FromVersion, res.Version, joinInts(res.Applied))
				return nil
			}
			dir, ok := strings.CutPrefix(from, "sqlite:")
			if !ok || dir == "" {
				return usagef("migrate: --from must be sqlite:DIR (the data dir of an embedded install)")
			}
			ref := ""
			switch {
			case to == "":
				return usagef("migrate: --from needs --to postgres (store.postgres.dsn) or --to with a secret reference")
			case to == "postgres":
				if !cfg.Store.Shared() {
					return usagef("migrate: --to postgres needs store.postgres.dsn in the config (or --to env:VAR)")
				}
			default:
				r, err := secretref.Parse(to)
				if err != nil || r.Scheme == secretref.SchemeVault {
					// Never repeat the value: it may be the DSN.
					return usagef("migrate: --to must be postgres or a secret reference to the DSN (env:VAR, file:PATH, dotenv:PATH#KEY, keyring:SERVICE/USER), never the DSN itself")
				}
				ref = to
			}
			res, err := app.CopySQLiteToPostgres(cmd.Context(), g.env(), app.CopyOptions{From: dir, To: ref, Config: cfg})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.io.Stdout, "copied %s into %s (schema version %d): %d rows in %d tables\n", res.From, res.Database, res.Version, res.Rows, len(res.Tables))
			for _, t := range res.Tables {
				fmt.Fprintf(g.io.Stdout, "  %-24s %d\n", t.Table, t.Rows)
			}
			if res.Audit != nil {
				fmt.Fprintf(g.io.Stdout, "audit log verified: %d records, %d checkpoints\n", res.Audit.Records, res.Audit.Checkpoints)
			}
			fmt.Fprintln(g.io.Stdout, "Next: set store.postgres.dsn, copy the master key to each replica, and start keystile serve")
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "copy this embedded install into PostgreSQL: sqlite:DIR")
	cmd.Flags().StringVar(&to, "to", "", "the target with --from: postgres (store.postgres.dsn) or a secret reference to the DSN")
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
