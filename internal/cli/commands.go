package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/masterkey"
)

func newInit(g *globals) *cobra.Command {
	var source string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the data directory, master key and database",
		Long: `init creates the data directory (mode 0700), a master key from the chosen source and the
encrypted database. It refuses to overwrite an existing keystile data directory.

Master key sources: file (default: a 0600 key file in the data dir; the weakest), passphrase
(Argon2id; prompted, or read from KEYSTILE_PASSPHRASE_FILE), keyring (OS keyring), env
(KEYSTILE_MASTER_KEY, base64 of 32 random bytes).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, dir, err := g.resolve()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("master-key") && cfg.MasterKey.Source != "" {
				source = cfg.MasterKey.Source
			}
			ok := false
			for _, s := range masterkey.Sources {
				ok = ok || s == source
			}
			if !ok {
				return usagef("--master-key must be one of file, passphrase, keyring, env (got %q)", source)
			}
			res, err := app.Init(cmd.Context(), g.env(), app.InitOptions{DataDir: dir, Source: source, Config: cfg, WriteYAML: true})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.io.Stdout, "Initialised keystile in %s\n  database:   %s\n  master key: %s", res.DataDir, res.DB, res.Source)
			if res.KeyFile != "" {
				fmt.Fprintf(g.io.Stdout, " (%s; back it up separately from the data, or use --master-key passphrase)", res.KeyFile)
			}
			fmt.Fprintln(g.io.Stdout)
			if res.Config != "" {
				fmt.Fprintf(g.io.Stdout, "  config:     %s\n", res.Config)
			}
			if res.LocalCA != "" {
				fmt.Fprintf(g.io.Stdout, "  local CA:   %s (key in the vault; for bots: keystile ca export)\n", res.LocalCA)
			}
			fmt.Fprintf(g.io.Stdout, "Next: keystile serve --data-dir %s\n", res.DataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "master-key", masterkey.SourceFile, "master key source: file|passphrase|keyring|env")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func newServe(g *globals) *cobra.Command {
	var migrate bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the keystile server (admin API, gateway)",
		Long: `serve opens the vault and serves the admin API on a unix socket in the data dir (and the
gateway). It disables core dumps first and shuts down cleanly on SIGINT/SIGTERM. With
store.postgres, --migrate (or store.postgres.migrate_on_start) applies pending migrations first;
otherwise an older schema is refused (run keystile migrate).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := app.DisableCoreDumps(); err != nil {
				return err
			}
			cfg, dir, err := g.resolve()
			if err != nil {
				return err
			}
			red := logging.NewRedactor()
			log, err := g.logger(cfg, red)
			if err != nil {
				return err
			}
			if cfg.Store.Redis.Addr != "" {
				app.RouteRedisDriverLogs(log)
			}
			srv, err := app.NewServer(cmd.Context(), g.env(), app.ServerOptions{ConfigPath: g.cfgFile, DataDir: dir, Config: cfg, Logger: log, Redactor: red,
				Migrate: migrate})
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&migrate, "migrate", false, "with store.postgres: apply pending migrations before serving")
	return cmd
}

func newVault(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "vault", Short: "Manage the vault's keys"}
	var jsonOut bool
	rekey := &cobra.Command{
		Use:   "rekey",
		Short: "Generate a new key-encryption key and rewrap every data key (online)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Rekey(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(res)
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Rekeyed: key-encryption key v%d -> v%d; %d data keys and %d system keys rewrapped\n",
				res.OldKEKVersion, res.NewKEKVersion, res.DataKeys, res.SystemKeys)
			return err
		},
	}
	rekey.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	cmd.AddCommand(rekey)
	return cmd
}
