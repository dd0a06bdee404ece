package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/scan"
)

// errFindings makes scan exit 1 when it found something.
var errFindings = errors.New("scan: secrets found")

func newScan(g *globals) *cobra.Command {
	var (
		gitHist, staged bool
		outFlags        *formatFlags
		baseline        string
	)
	cmd := &cobra.Command{
		Use:   "scan [PATH...]",
		Short: "Find leaked secrets in files, git history or staged changes",
		Long: `scan looks for leaked credentials with three detectors: kst_ tokens (confirmed offline by
their checksum), gitleaks' default rule set, and the exact values held in this keystile's vault
(matched by keyed fingerprints: neither output nor fingerprints reveal a value; used when a data
dir with a vault exists and its master key is available).

Findings show file, line, detector, rule and a masked preview. Exit status: 0 clean, 1 findings,
2 usage. --git scans the whole history of the repository at PATH (default .), --staged what is
staged there (the pre-commit hook). --baseline FILE (an earlier --format json report) hides
known findings, matched by fingerprint, never by value.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if gitHist && staged {
				return usagef("scan: --git and --staged exclude each other")
			}
			format, err := outFlags.value(cmd)
			if err != nil {
				return err
			}
			write := map[string]func(io.Writer, *scan.Report) error{
				"text": scan.WriteText, "json": scan.WriteJSON, "sarif": scan.WriteSARIF,
			}[format]
			if (gitHist || staged) && len(args) > 1 {
				return usagef("scan: --git and --staged take at most one repository path")
			}
			var base *scan.Baseline
			if baseline != "" {
				f, err := os.Open(baseline) // #nosec G304 -- user-named baseline file
				if err != nil {
					return usagef("scan: baseline: %v", err)
				}
				base, err = scan.ParseBaseline(f)
				_ = f.Close()
				if err != nil {
					return usagef("%v", err)
				}
			}
			ctx := cmd.Context()
			opts := scan.Options{}
			closeVault := g.scanVault(ctx, &opts)
			defer closeVault()
			s, err := scan.New(ctx, opts)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{"."}
			}
			var rep *scan.Report
			switch {
			case gitHist:
				rep, err = s.ScanGit(ctx, args[0])
			case staged:
				rep, err = s.ScanStaged(ctx, args[0])
			default:
				rep, err = s.ScanPaths(ctx, args)
			}
			if err != nil {
				return err
			}
			rep.Suppress(base)
			if err := write(g.io.Stdout, rep); err != nil {
				return err
			}
			if len(rep.Findings) > 0 {
				return errFindings
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&gitHist, "git", false, "scan the git history of the repository")
	f.BoolVar(&staged, "staged", false, "scan the changes staged for commit (pre-commit hook)")
	outFlags = newFormatFlags(cmd, "text", "text", "json", "sarif")
	f.StringVar(&baseline, "baseline", "", "earlier JSON report whose findings are known and not reported")
	return cmd
}

// scanVault enables the vault detector when a keystile data dir with a
// database exists; without one, or without the master key, scan runs the
// other detectors and says so on stderr. It returns a close function.
func (g *globals) scanVault(ctx context.Context, o *scan.Options) func() {
	cfg, dir, err := g.resolve()
	if err != nil {
		fmt.Fprintf(g.io.Stderr, "keystile: scan: vault detector off: %v\n", err)
		return func() {}
	}
	if _, err := os.Stat(filepath.Join(dir, app.DBFile)); err != nil && !cfg.Store.Shared() {
		return func() {}
	}
	db, v, err := app.OpenVault(ctx, g.env(), dir, cfg, nil, nil)
	if err != nil {
		fmt.Fprintf(g.io.Stderr, "keystile: scan: vault detector off: %v\n", err)
		return func() {}
	}
	o.Vault = v
	return func() {
		_ = v.Close(ctx)
		_ = db.Close()
	}
}

func newHooks(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "Manage git hooks that run keystile",
	}
	var force, jsonOut bool
	install := &cobra.Command{
		Use:   "install [REPO]",
		Short: "Write a git pre-commit hook that runs 'keystile scan --staged'",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			path, err := scan.InstallHook(cmd.Context(), dir, force)
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(struct {
					Hook string `json:"hook"`
				}{path})
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Installed pre-commit hook %s\n", path)
			return err
		},
	}
	install.Flags().BoolVar(&force, "force", false, "replace an existing pre-commit hook")
	jsonFlag(install, &jsonOut)
	cmd.AddCommand(install)
	return cmd
}
