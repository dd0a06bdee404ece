package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError marks errors that are the caller's misuse of the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// IO is the process's standard streams and environment.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Environ is the environment exec's child inherits; nil means
	// os.Environ.
	Environ func() []string
}

type globals struct {
	io      IO
	dataDir string
	cfgPath string
	// cfgFile is the file resolve loaded the config from ("" for the
	// built-in defaults).
	cfgFile string
	// totp is --totp: a second-factor code for a gated command (mfa.go).
	totp       string
	stdinLines *bufio.Reader
}

// Main runs the keystile command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(ctx, args, IO{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
}

// Run is Main with an explicit environment (tests use it).
func Run(ctx context.Context, args []string, st IO) int {
	if st.Getenv == nil {
		st.Getenv = os.Getenv
	}
	g := &globals{io: st}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(st.Stdin)
	root.SetOut(st.Stdout)
	root.SetErr(st.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	// keystile exec: the exit code is the child's.
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	fmt.Fprintf(st.Stderr, "keystile: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(st.Stderr, "Run 'keystile --help' for usage.")
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsage recognises cobra's own argument and flag errors, which it
// does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "required flag", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "keystile",
		Short:         "keystile: a credential firewall for trading and betting bots",
		Long:          "keystile holds your exchange and betting API credentials encrypted, gives each bot a short-lived\nscoped kst_ token, signs each outbound request itself and refuses what the bot's policy does not allow.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	setVersionFlag(root)
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", "", "data directory (env KEYSTILE_DATA_DIR; default $XDG_DATA_HOME/keystile)")
	pf.StringVar(&g.cfgPath, "config", "", "config file (env KEYSTILE_CONFIG; default <data-dir>/keystile.yaml if present)")
	pf.StringVar(&g.totp, "totp", "", "TOTP or recovery code for a command that needs the admin second factor (env KEYSTILE_TOTP; single use)")
	root.AddCommand(newVersion(g), newInit(g), newServe(g), newSecret(g), newVault(g), newToken(g), newDemo(g), newSandbox(g), newOAuth(g), newDoctor(g), newExec(g), newScan(g), newHooks(g), newAudit(g))
	root.AddCommand(newPolicy(g))
	root.AddCommand(newStatus(g), newService(g))
	root.AddCommand(newMFA(g), newAdminCmd(g))
	root.AddCommand(newAlert(g))
	root.AddCommand(newCA(g))
	root.AddCommand(newStatus(g), newService(g), newBackup(g), newRestore(g))
	root.AddCommand(newPanic(g), newIncident(g))
	root.AddCommand(newDetect(g))
	root.AddCommand(newMigrate(g))
	return root
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments", cmd.CommandPath())
	}
	return nil
}

// resolve loads the config and picks the data directory.
func (g *globals) resolve() (*config.Config, string, error) {
	var cfg *config.Config
	if g.cfgPath != "" || g.io.Getenv(app.EnvConfig) != "" {
		c, file, err := app.LoadConfig(g.cfgPath, g.io.Getenv, "")
		if err != nil {
			return nil, "", err
		}
		cfg, g.cfgFile = c, file
	}
	dir, err := app.ResolveDataDir(g.dataDir, g.io.Getenv, cfg)
	if err != nil {
		return nil, "", err
	}
	if cfg == nil {
		c, file, err := app.LoadConfig("", g.io.Getenv, dir)
		if err != nil {
			return nil, "", err
		}
		cfg, g.cfgFile = c, file
	}
	return cfg, dir, nil
}

func (g *globals) client() (*admin.Client, error) {
	cfg, dir, err := g.resolve()
	if err != nil {
		return nil, err
	}
	sock := cfg.Admin.Socket
	if sock == "" {
		sock = filepath.Join(dir, app.SocketFile)
	}
	return g.connect(sock)
}

func (g *globals) environ() []string {
	if g.io.Environ != nil {
		return g.io.Environ()
	}
	return os.Environ()
}

func (g *globals) env() app.Env {
	return app.Env{Getenv: g.io.Getenv, Prompt: g.prompter(), Stderr: g.io.Stderr}
}

// prompter returns a no-echo line reader when stdin is a terminal.
func (g *globals) prompter() func(string) ([]byte, error) {
	f, ok := g.io.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) { // #nosec G115 -- fd fits int
		return nil
	}
	return func(p string) ([]byte, error) {
		fmt.Fprint(g.io.Stderr, p)
		b, err := term.ReadPassword(int(f.Fd())) // #nosec G115 -- fd fits int
		fmt.Fprintln(g.io.Stderr)
		return b, err
	}
}

func (g *globals) logger(cfg *config.Config, r *logging.Redactor) (*slog.Logger, error) {
	lvl, err := logging.ParseLevel(cfg.Log.Level)
	if err != nil {
		return nil, err
	}
	return logging.New(g.io.Stderr, logging.Options{Level: lvl, Format: cfg.Log.Format, Redactor: r}), nil
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.io.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// The output convention: every command that prints a result takes --json
// (snake_case keys, one document, or one per line for streams); commands
// that had a --format flag keep it, with --json as the same as
// --format json. New commands register their flag with jsonFlag or
// formatFlags; TestOutputFlagConvention checks every command.

// jsonFlag registers --json.
func jsonFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "json", false, "print the result as JSON (snake_case keys)")
}

// formatFlags is a --format flag with its choices, and --json.
type formatFlags struct {
	format  string
	json    bool
	choices []string
}

// formatFlags registers --format (default def; one of choices) and
// --json (the same as --format json, or JSON output where no JSON choice
// exists, for commands that print JSON anyway).
func newFormatFlags(cmd *cobra.Command, def string, choices ...string) *formatFlags {
	f := &formatFlags{choices: choices}
	cmd.Flags().StringVar(&f.format, "format", def, "output format: "+strings.Join(choices, ", ")+" (--json is --format json)")
	jsonFlag(cmd, &f.json)
	return f
}

// value returns the chosen format; --json with another --format is a
// usage error.
func (f *formatFlags) value(cmd *cobra.Command) (string, error) {
	if !slices.Contains(f.choices, f.format) {
		return "", usagef("%s: --format must be one of %s, not %q", cmd.CommandPath(), strings.Join(f.choices, ", "), f.format)
	}
	if f.json {
		if cmd.Flags().Changed("format") && f.format != "json" {
			return "", usagef("%s: --json and --format %s exclude each other", cmd.CommandPath(), f.format)
		}
		return "json", nil
	}
	return f.format, nil
}
