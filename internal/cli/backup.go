package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/masterkey"
)

// oneFile accepts exactly one FILE argument.
func oneFile(cmd *cobra.Command, args []string) error {
	if len(args) != 1 || args[0] == "" {
		return usagef("%s takes one FILE argument", cmd.CommandPath())
	}
	return nil
}

func newBackup(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent backup of the data dir (without the master key)",
		Long: `backup writes FILE (gzip'd tar, 0600; refused if it exists) holding a consistent snapshot of the
database and of the audit log — safe while serve runs —, keystile.yaml if the data dir has one, and a
manifest with every member's SHA-256.

The master key is never in a backup: the credentials in it stay sealed under that key, and the archive
alone opens nothing. Keep the key separately — the key file (its path is printed), the passphrase, the
keyring entry or KEYSTILE_MASTER_KEY — and restore with keystile restore FILE [--key-file PATH].`,
		Args: oneFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, dir, err := g.resolve()
			if err != nil {
				return err
			}
			res, err := app.Backup(cmd.Context(), app.BackupOptions{DataDir: dir, Config: cfg, Archive: args[0]})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.io.Stdout, "Backed up %s to %s:", dir, res.Archive)
			for _, f := range res.Manifest.Files {
				fmt.Fprintf(g.io.Stdout, " %s (%d bytes)", f.Name, f.Size)
			}
			fmt.Fprintln(g.io.Stdout)
			fmt.Fprintf(g.io.Stderr, "The master key is NOT in the backup (source %s)", res.Manifest.MasterKey.Source)
			if res.Manifest.MasterKey.Source == masterkey.SourceFile {
				fmt.Fprintf(g.io.Stderr, ": keep a copy of %s apart from the backup; restore with keystile restore %s --key-file <copy>", res.KeyFile, res.Archive)
			}
			fmt.Fprintln(g.io.Stderr, ".")
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func newRestore(g *globals) *cobra.Command {
	var keyFile string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "restore FILE [--key-file PATH]",
		Short: "Restore a backup into a new data dir",
		Long: `restore unpacks a keystile backup into the data dir (--data-dir), which must not hold a database
yet. Every member is checked against the backup's manifest (name, size, SHA-256) before anything is
moved into place. The backup holds no master key: for the file source pass --key-file with a copy of
the key file (copied into the data dir as master.key, 0600), or put master.key there first. The
restored vault is then opened with that key; a key that does not open it undoes the restore. Other
sources are checked when that needs no prompt.`,
		Args: oneFile,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := app.ResolveDataDir(g.dataDir, g.io.Getenv, nil)
			if err != nil {
				return err
			}
			res, err := app.Restore(cmd.Context(), app.RestoreOptions{Archive: args[0], DataDir: dir, KeyFile: keyFile, Env: g.env()})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.io.Stdout, "Restored %s into %s (backup of %s, keystile %s)\n", args[0], res.DataDir,
				res.Manifest.Created.Format("2006-01-02 15:04:05 UTC"), res.Manifest.Version)
			if res.KeyFile != "" {
				fmt.Fprintf(g.io.Stdout, "  master key: %s\n", res.KeyFile)
			}
			if res.Verified {
				fmt.Fprintln(g.io.Stdout, "  the master key opens the restored vault")
			} else if res.Note != "" {
				fmt.Fprintf(g.io.Stdout, "  %s\n", res.Note)
			}
			fmt.Fprintf(g.io.Stdout, "Next: keystile serve --data-dir %s\n", res.DataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "a copy of the master key file (file source), copied into the data dir")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}
