package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/vault"
)

// Result is the outcome of one check, ordered pass < skip < warn < fail
// for thresholds (skip never trips one).
type Result string

// Results.
const (
	Pass Result = "pass"
	Skip Result = "skip"
	Warn Result = "warn"
	Fail Result = "fail"
)

func (r Result) rank() int {
	switch r {
	case Warn:
		return 2
	case Fail:
		return 3
	default:
		return 0
	}
}

// Severity says how much a failure of the check matters.
type Severity string

// Severities.
const (
	High   Severity = "high"
	Medium Severity = "medium"
	Low    Severity = "low"
	Info   Severity = "info"
)

// ErrLevel is returned by ParseLevel for anything but warn or fail.
var ErrLevel = errors.New("doctor: --fail-on wants warn or fail")

// ParseLevel parses a --fail-on threshold.
func ParseLevel(s string) (Result, error) {
	switch Result(s) {
	case Warn, Fail:
		return Result(s), nil
	}
	return "", ErrLevel
}

// Check is one item of the checklist.
type Check struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Severity Severity `json:"severity"`
	Result   Result   `json:"result"`
	Detail   string   `json:"detail,omitempty"`
	Fix      string   `json:"fix,omitempty"`
}

// Summary counts checks by result.
type Summary struct {
	Pass int `json:"pass"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Report is the checklist in a fixed order.
type Report struct {
	Checks  []Check `json:"checks"`
	Summary Summary `json:"summary"`
}

// Failing returns the checks whose result is at or above level.
func (r Report) Failing(level Result) []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Result.rank() >= level.rank() && level.rank() > 0 {
			out = append(out, c)
		}
	}
	return out
}

// Find returns the check with the given id.
func (r Report) Find(id string) (Check, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

// WriteText writes the report for a terminal.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(string(c.Result)), c.Severity, c.ID, c.Title)
		if c.Detail != "" {
			for _, l := range strings.Split(c.Detail, "\n") {
				fmt.Fprintf(tw, "\t\t\t  %s\n", l)
			}
		}
		if c.Fix != "" && (c.Result == Warn || c.Result == Fail) {
			fmt.Fprintf(tw, "\t\t\t  fix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d pass, %d warn, %d fail, %d skip\n", r.Summary.Pass, r.Summary.Warn, r.Summary.Fail, r.Summary.Skip)
	return err
}

// Server is what doctor asks a running keystile server (*admin.Client
// satisfies it). Errors make the dependent checks skip.
type Server interface {
	Status(ctx context.Context) (admin.Status, error)
	ListTokens(ctx context.Context) ([]admin.TokenInfo, error)
	ListSecrets(ctx context.Context) ([]vault.Info, error)
}

// Vault is what doctor asks an opened vault (*vault.Vault satisfies it).
type Vault interface {
	List(ctx context.Context) ([]vault.Info, error)
	Fingerprints(ctx context.Context) ([]vault.ValueFingerprint, error)
	Fingerprint(value []byte) []byte
}

// Options say what doctor looks at. Zero fields fall back as documented.
type Options struct {
	// DataDir is the data directory. Required.
	DataDir string
	// Config is the loaded config. If nil, config.Default().
	Config *config.Config
	// MasterKeySource is the master-key source recorded in the vault
	// ("file", "passphrase", "keyring", "env"); "" means unknown.
	MasterKeySource string
	// KeyFile is the key file of the file source actually in use (as
	// app.ResolveKeyFile finds it). If "", the config's master_key.file,
	// else <DataDir>/master.key.
	KeyFile string
	// KeyFileProblem, if set, is why the key file in use cannot be told
	// (two key files holding different keys, both named): the key-file
	// check fails with it.
	KeyFileProblem string
	// Socket is the admin socket. If "", the config's admin.socket, else
	// <DataDir>/admin.sock.
	Socket string
	// Home is the home directory holding shell histories. "" skips them.
	Home string
	// WorkDir is the working tree checked for .env files. "" skips it.
	WorkDir string
	// UID is the user doctor runs as.
	UID int
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// ReadProc reads /proc/<pid>/<name>. If nil, the real /proc.
	ReadProc func(pid int, name string) ([]byte, error)
	// Git runs git in dir and returns its stdout. If nil, the git binary.
	Git func(ctx context.Context, dir string, args ...string) ([]byte, error)
	// Server is the running server; nil when none runs, with the reason
	// in ServerReason.
	Server       Server
	ServerReason string
	// Vault is the vault opened standalone; nil when it could not be,
	// with the reason in VaultReason.
	Vault       Vault
	VaultReason string
	// MaxHistoryBytes bounds how much of each history file is read (its
	// end). If 0, 32 MiB.
	MaxHistoryBytes int64
	// AuditVerify recomputes the audit log's chain and checkpoints (see
	// audit.Verify); nil when it cannot, with the reason in AuditReason.
	AuditVerify func(ctx context.Context) (audit.Report, error)
	AuditReason string
}

type run struct {
	Options
	ctx    context.Context
	now    time.Time
	status *admin.Status
	infos  []vault.Info
	infoOK string // "" or why the credential list is unavailable
}

// Run runs every check and returns the report. It never fails: a check
// that cannot run reports skip with the reason.
func Run(ctx context.Context, o Options) Report {
	if o.Config == nil {
		o.Config = config.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReadProc == nil {
		o.ReadProc = func(pid int, name string) ([]byte, error) {
			return os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), name)) // #nosec G304 -- fixed /proc path
		}
	}
	if o.Git == nil {
		o.Git = runGit
	}
	if o.MaxHistoryBytes <= 0 {
		o.MaxHistoryBytes = 32 << 20
	}
	if o.KeyFile == "" {
		o.KeyFile = o.Config.MasterKey.File
	}
	if o.KeyFile == "" && o.DataDir != "" {
		o.KeyFile = filepath.Join(o.DataDir, "master.key")
	}
	if o.Socket == "" {
		o.Socket = o.Config.Admin.Socket
	}
	if o.Socket == "" && o.DataDir != "" {
		o.Socket = filepath.Join(o.DataDir, "admin.sock")
	}
	r := &run{Options: o, ctx: ctx, now: o.Now()}
	r.load()
	checks := []func() Check{
		r.dataDir, r.keyFile, r.masterKeySource, r.adminSocket, r.runningAsRoot, r.coreDumps,
		r.envFiles, r.historyPatterns, r.historyVaultValues,
		r.venuesPlainHTTP, r.venuesQueryKey, r.venuesTLS, r.venuesTimeouts, r.listenersExposure,
		r.tokensExpiry, r.tokensScopes, r.credentialRotation, r.compromised, r.auditChain, r.execInjections,
	}
	var rep Report
	for _, f := range checks {
		c := f()
		switch c.Result {
		case Pass:
			rep.Summary.Pass++
		case Warn:
			rep.Summary.Warn++
		case Fail:
			rep.Summary.Fail++
		default:
			c.Result = Skip
			rep.Summary.Skip++
		}
		rep.Checks = append(rep.Checks, c)
	}
	return rep
}

// load asks the server and the vault once for what several checks need.
func (r *run) load() {
	r.infoOK = "neither the server (" + reason(r.ServerReason, "not running") + ") nor the vault (" + reason(r.VaultReason, "not opened") + ") is available"
	if r.Server != nil {
		if st, err := r.Server.Status(r.ctx); err == nil {
			r.status = &st
		} else {
			r.Server, r.ServerReason = nil, "status: "+err.Error()
		}
	}
	if r.Server != nil {
		if l, err := r.Server.ListSecrets(r.ctx); err == nil {
			r.infos, r.infoOK = l, ""
			return
		}
	}
	if r.Vault != nil {
		if l, err := r.Vault.List(r.ctx); err == nil {
			r.infos, r.infoOK = l, ""
		}
	}
}

func reason(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func runGit(ctx context.Context, dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...) // #nosec G204 -- fixed git subcommands
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	return cmd.Output()
}

// list joins findings, at most 20 of them.
func list(items []string) string {
	if len(items) > 20 {
		n := len(items) - 20
		items = append(items[:20:20], fmt.Sprintf("... and %d more", n))
	}
	return strings.Join(items, "\n")
}
