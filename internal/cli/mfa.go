package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

// Environment variables of the admin second factor and the remote admin
// listener.
const (
	EnvTOTP           = "KEYSTILE_TOTP"
	EnvMFASession     = "KEYSTILE_MFA_SESSION"
	EnvAdminURL       = "KEYSTILE_ADMIN_URL"
	EnvAdminToken     = "KEYSTILE_ADMIN_TOKEN"      // #nosec G101 -- a variable name
	EnvAdminTokenFile = "KEYSTILE_ADMIN_TOKEN_FILE" // #nosec G101 -- a variable name
	EnvAdminCA        = "KEYSTILE_ADMIN_CA"
)

// connect returns a client for the server: over KEYSTILE_ADMIN_URL when it
// is set (the TCP admin listener), else over the socket; with the second
// factor attached (session, --totp code, prompt).
func (g *globals) connect(sock string) (*admin.Client, error) {
	var c *admin.Client
	var err error
	if u := g.io.Getenv(EnvAdminURL); u != "" {
		c, err = g.remoteClient(u)
	} else {
		c, err = admin.NewClient(sock)
	}
	if err != nil {
		return nil, err
	}
	m := admin.ClientMFA{Code: g.totp}
	if m.Code == "" {
		m.Code = g.io.Getenv(EnvTOTP)
	}
	if s := g.io.Getenv(EnvMFASession); s != "" {
		m.Session = s
	} else if s, _, err := g.loadSession(c.Target()); err == nil {
		m.Session = s
		m.SessionRefused = func() { _ = g.dropSession(c.Target()) }
	}
	if p := g.prompter(); p != nil {
		m.Prompt = func(_ context.Context, why string) (string, error) {
			fmt.Fprintf(g.io.Stderr, "keystile: %s\n", why)
			b, err := p("TOTP or recovery code: ")
			if err != nil {
				return "", fmt.Errorf("mfa: read the code: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		}
	}
	c.SetMFA(m)
	return c, nil
}

// remoteClient builds a client for the TCP admin listener.
func (g *globals) remoteClient(u string) (*admin.Client, error) {
	tok := g.io.Getenv(EnvAdminToken)
	if f := g.io.Getenv(EnvAdminTokenFile); f != "" {
		b, err := os.ReadFile(f) // #nosec G304 -- the operator names the file
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvAdminTokenFile, err)
		}
		tok = strings.TrimSpace(string(b))
		clear(b)
	}
	if tok == "" {
		return nil, usagef("%s is set: the admin token goes in %s (a file) or %s", EnvAdminURL, EnvAdminTokenFile, EnvAdminToken)
	}
	var roots *x509.CertPool
	if ca := g.io.Getenv(EnvAdminCA); ca != "" {
		pem, err := os.ReadFile(ca) // #nosec G304 -- the operator names the file
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvAdminCA, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in %s", EnvAdminCA, ca)
		}
	}
	return admin.NewRemoteClient(u, secret.New([]byte(tok)), roots)
}

// storedSession is the file `mfa login` writes.
type storedSession struct {
	Target    string    `json:"target"`
	Session   string    `json:"session"`
	ExpiresAt time.Time `json:"expires_at"`
}

// sessionDir is where admin sessions are kept: $XDG_RUNTIME_DIR/keystile
// (a per-user tmpfs, gone at logout), else /tmp/keystile-UID; created
// 0700 and refused if it is anyone else's or open to others.
func (g *globals) sessionDir(create bool) (string, error) {
	base := g.io.Getenv("XDG_RUNTIME_DIR")
	dir := filepath.Join(base, "keystile")
	if base == "" {
		dir = filepath.Join(os.TempDir(), "keystile-"+strconv.Itoa(os.Getuid()))
	}
	if create {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("mfa: session directory: %w", err)
		}
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("mfa: session directory: %w", err)
	}
	if !st.IsDir() || st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("mfa: session directory %s must be a directory of mode 0700", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() {
		return "", fmt.Errorf("mfa: session directory %s belongs to uid %d, not to you", dir, sys.Uid)
	}
	return dir, nil
}

// sessionPath is the session file of a server (socket path or URL).
func (g *globals) sessionPath(target string, create bool) (string, error) {
	dir, err := g.sessionDir(create)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(target))
	return filepath.Join(dir, "mfa-session-"+hex.EncodeToString(sum[:8])+".json"), nil
}

func (g *globals) loadSession(target string) (string, time.Time, error) {
	p, err := g.sessionPath(target, false)
	if err != nil {
		return "", time.Time{}, err
	}
	st, err := os.Lstat(p)
	if err != nil {
		return "", time.Time{}, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return "", time.Time{}, fmt.Errorf("mfa: %s must be a regular file of mode 0600", p)
	}
	b, err := os.ReadFile(p) // #nosec G304 -- our own session file
	if err != nil {
		return "", time.Time{}, err
	}
	var s storedSession
	if err := json.Unmarshal(b, &s); err != nil || s.Target != target {
		return "", time.Time{}, fmt.Errorf("mfa: %s is not a session of %s", p, target)
	}
	if !time.Now().Before(s.ExpiresAt) {
		_ = os.Remove(p)
		return "", time.Time{}, fmt.Errorf("mfa: session expired")
	}
	return s.Session, s.ExpiresAt, nil
}

func (g *globals) saveSession(target string, s admin.MFASessionGrant) (string, error) {
	p, err := g.sessionPath(target, true)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(storedSession{Target: target, Session: s.Session, ExpiresAt: s.ExpiresAt})
	if err != nil {
		return "", err
	}
	tmp := p + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", fmt.Errorf("mfa: store the session: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("mfa: store the session: %w", err)
	}
	return p, nil
}

func (g *globals) dropSession(target string) error {
	p, err := g.sessionPath(target, false)
	if err != nil {
		return err
	}
	return os.Remove(p)
}

// readCode gets a code for a command that needs one now: --totp, then
// KEYSTILE_TOTP, then a prompt on the terminal, then a line of stdin.
func (g *globals) readCode(prompt string) (string, error) {
	if g.totp != "" {
		return g.totp, nil
	}
	if c := g.io.Getenv(EnvTOTP); c != "" {
		return c, nil
	}
	if p := g.prompter(); p != nil {
		b, err := p(prompt)
		return strings.TrimSpace(string(b)), err
	}
	fmt.Fprint(g.io.Stderr, prompt)
	line, err := g.readLine()
	fmt.Fprintln(g.io.Stderr)
	return line, err
}

// readLine reads one line of stdin (a script feeding the code).
func (g *globals) readLine() (string, error) {
	if g.stdinLines == nil {
		g.stdinLines = bufio.NewReader(g.io.Stdin)
	}
	line, err := g.stdinLines.ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		return "", errors.New("mfa: no code given (pass --totp CODE, set KEYSTILE_TOTP or run on a terminal)")
	}
	return strings.TrimSpace(line), nil
}

func newMFA(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mfa",
		Short: "Admin second factor: TOTP codes, recovery codes, short admin sessions",
		Long: `mfa manages the second factor that sensitive admin actions need once it is enrolled: secret
set/rotate/revoke/rm, vault rekey, token create/rotate with scopes beyond *.read, token unfreeze,
oauth login, mfa reset and recovery codes. A gated command takes a session from ` + "`keystile mfa login`" + `,
or a code from --totp / KEYSTILE_TOTP, or asks for one on the terminal.`,
	}
	cmd.AddCommand(newMFAEnroll(g), newMFAStatus(g), newMFALogin(g), newMFALogout(g), newMFAReset(g), newMFARecoveryCodes(g))
	return cmd
}

func newMFAEnroll(g *globals) *cobra.Command {
	var account string
	var invert, noQR, jsonOut bool
	cmd := &cobra.Command{
		Use:   "enroll [--account NAME] [--invert] [--no-qr] [--json]",
		Short: "Enrol an authenticator app (QR code, recovery codes); active after a first code",
		Long: `enroll makes a TOTP secret, stores it in the server's vault, shows it as a QR code (and as a
key to type) for an authenticator app, and asks for the code the app then shows. Only a good
code activates the second factor; then the recovery codes are shown, once: keep them offline.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.client()
			if err != nil {
				return err
			}
			if st, err := c.MFAStatus(ctx); err != nil {
				return err
			} else if st.State == mfa.StateActive {
				return errors.New("mfa: a second factor is already enrolled; `keystile mfa reset` first to enrol another")
			}
			if account == "" {
				account = defaultAccount(g)
			}
			sec, err := mfa.NewSecret(nil)
			if err != nil {
				return err
			}
			defer sec.Wipe()
			codes, err := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
			if err != nil {
				return err
			}
			st, err := c.MFAEnroll(ctx, sec.Clone(), codes)
			if err != nil {
				return err
			}
			uri, err := mfa.KeyURI(st.Issuer, account, sec)
			if err != nil {
				return err
			}
			out := g.io.Stdout
			if jsonOut {
				// The QR code and key are for the person at the terminal;
				// stdout carries only the JSON result.
				out = g.io.Stderr
			}
			fmt.Fprintf(out, "Scan this QR code with an authenticator app, or type the key in:\n\n")
			if !noQR {
				qr, err := mfa.TerminalQR(uri, invert)
				if err != nil {
					return err
				}
				fmt.Fprint(out, qr)
			}
			fmt.Fprintf(out, "\n  account: %s:%s\n  key:     %s\n  uri:     %s\n\n", st.Issuer, account, groups(string(sec.Reveal()), 4), uri)
			for attempt := 1; ; attempt++ {
				code, err := g.readCode("Code shown by the app: ")
				if err != nil {
					return fmt.Errorf("%w; the enrolment is pending: run `keystile mfa enroll` again", err)
				}
				_, err = c.MFAConfirm(ctx, code)
				if err == nil {
					break
				}
				var ae *admin.APIError
				if attempt >= 3 || g.prompter() == nil || !errors.As(err, &ae) || ae.Code != "mfa_invalid" {
					return fmt.Errorf("%w; the enrolment is pending: run `keystile mfa enroll` again", err)
				}
				fmt.Fprintln(g.io.Stderr, "keystile: that code is not valid; check the phone's clock and try the next one")
			}
			if jsonOut {
				return g.printJSON(struct {
					State         string   `json:"state"`
					Issuer        string   `json:"issuer"`
					Account       string   `json:"account"`
					RecoveryCodes []string `json:"recovery_codes"`
				}{mfa.StateActive, st.Issuer, account, codes})
			}
			fmt.Fprintf(out, "Second factor enrolled. Sensitive admin actions now need a code or an admin session.\n\n")
			fmt.Fprintf(out, "Recovery codes: each works once, instead of a code, if the phone is lost.\nThey are shown only now; keystile keeps only their digests. Store them offline:\n\n")
			for _, rc := range codes {
				fmt.Fprintf(out, "  %s\n", rc)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&account, "account", "", "account name shown by the app (default USER@HOST)")
	cmd.Flags().BoolVar(&invert, "invert", false, "draw the QR code for a light-background terminal")
	cmd.Flags().BoolVar(&noQR, "no-qr", false, "do not draw the QR code (show the key and URI only)")
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func defaultAccount(g *globals) string {
	user := g.io.Getenv("USER")
	if user == "" {
		user = "uid" + strconv.Itoa(os.Getuid())
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return user + "@" + host
}

// groups spaces s every n characters.
func groups(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+n, len(s))])
	}
	return b.String()
}

func newMFAStatus(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show whether a second factor is enrolled, recovery codes left, lockout and your session",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.MFAStatus(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(st)
			}
			out := g.io.Stdout
			fmt.Fprintf(out, "state:            %s\n", st.State)
			if !st.EnrolledAt.IsZero() {
				fmt.Fprintf(out, "enrolled:         %s\n", st.EnrolledAt.Format(time.RFC3339))
			}
			if st.State != "none" {
				fmt.Fprintf(out, "recovery codes:   %d left\n", st.RecoveryCodesLeft)
			}
			if st.Failures > 0 {
				fmt.Fprintf(out, "wrong codes:      %d in a row\n", st.Failures)
			}
			if !st.LockedUntil.IsZero() {
				fmt.Fprintf(out, "locked until:     %s\n", st.LockedUntil.Format(time.RFC3339))
			}
			fmt.Fprintf(out, "you are:          %s\n", st.Principal)
			if !st.SessionExpires.IsZero() {
				fmt.Fprintf(out, "your session:     until %s\n", st.SessionExpires.Format(time.RFC3339))
			} else {
				fmt.Fprintf(out, "your session:     none (keystile mfa login; sessions last %s)\n", time.Duration(st.SessionTTLSeconds)*time.Second)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newMFALogin(g *globals) *cobra.Command {
	var printEnv, jsonOut bool
	cmd := &cobra.Command{
		Use:   "login [--totp CODE] [--env] [--json]",
		Short: "Exchange one code for a short admin session that gated commands then use",
		Long: `login checks a TOTP or recovery code and opens an admin session (admin.mfa.session_ttl, default
5m) bound to your uid (or admin token). It is kept in $XDG_RUNTIME_DIR/keystile (else
/tmp/keystile-UID), mode 0600, one file per server; with --env it is printed as
KEYSTILE_MFA_SESSION=... instead, for a script to export. A session cannot renew itself.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			code, err := g.readCode("TOTP or recovery code: ")
			if err != nil {
				return err
			}
			s, err := c.MFALogin(cmd.Context(), code)
			if err != nil {
				return err
			}
			if printEnv && !jsonOut {
				_, err := fmt.Fprintf(g.io.Stdout, "%s=%s\n", EnvMFASession, s.Session)
				return err
			}
			var p string
			if !printEnv {
				if p, err = g.saveSession(c.Target(), s); err != nil {
					return err
				}
			}
			if jsonOut {
				res := struct {
					ExpiresAt time.Time `json:"expires_at"`
					StoredIn  string    `json:"stored_in,omitempty"`
					Env       string    `json:"env,omitempty"`
				}{ExpiresAt: s.ExpiresAt, StoredIn: p}
				if printEnv {
					res.Env = EnvMFASession + "=" + s.Session
				}
				return g.printJSON(res)
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Admin session until %s (%s), stored in %s\n", s.ExpiresAt.Local().Format(time.TimeOnly),
				time.Until(s.ExpiresAt).Round(time.Second), p)
			return err
		},
	}
	cmd.Flags().BoolVar(&printEnv, "env", false, "print KEYSTILE_MFA_SESSION=... instead of storing the session")
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func newMFALogout(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "logout [--json]",
		Short: "End your admin session (on the server and here)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			err = c.MFALogout(cmd.Context())
			_ = g.dropSession(c.Target())
			var ae *admin.APIError
			ended := true
			if errors.As(err, &ae) && ae.Status == 404 {
				ended, err = false, nil
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(struct {
					Ended bool `json:"ended"`
				}{ended})
			}
			if !ended {
				_, err = fmt.Fprintln(g.io.Stdout, "No admin session to end")
				return err
			}
			_, err = fmt.Fprintln(g.io.Stdout, "Admin session ended")
			return err
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func newMFAReset(g *globals) *cobra.Command {
	var offline, jsonOut bool
	cmd := &cobra.Command{
		Use:   "reset [--offline] [--json]",
		Short: "Remove the second factor (needs a code, a recovery code or a session; --offline: the break-glass path)",
		Long: `reset removes the enrolment, its recovery codes and the TOTP secret (crypto-shredded in the
vault) and ends every admin session. Online it is itself gated: give a code from the app or,
with the phone lost, a recovery code (--totp or the prompt).

With the phone and every recovery code lost: stop the server and run reset --offline on the
data directory; it opens the vault with the master key (as every offline command does) and
writes the reset to the audit log. Then start the server and enrol again.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if offline {
				cfg, dir, err := g.resolve()
				if err != nil {
					return err
				}
				log, err := g.logger(cfg, logging.NewRedactor())
				if err != nil {
					return err
				}
				if err := app.ResetMFAOffline(cmd.Context(), g.env(), app.ResetMFAOptions{DataDir: dir, Config: cfg, Logger: log, Stdout: g.io.Stdout}); err != nil {
					return err
				}
				if jsonOut {
					return g.printJSON(struct {
						State   string `json:"state"`
						Offline bool   `json:"offline"`
					}{"none", true})
				}
				_, err = fmt.Fprintln(g.io.Stdout, "Second factor removed (offline). Start the server and run `keystile mfa enroll`.")
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.MFAReset(cmd.Context())
			if err != nil {
				return err
			}
			_ = g.dropSession(c.Target())
			if jsonOut {
				return g.printJSON(st)
			}
			_, err = fmt.Fprintln(g.io.Stdout, "Second factor removed; sensitive actions no longer need one. Enrol again: keystile mfa enroll")
			return err
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "with the server stopped: reset on the data directory with the master key")
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func newMFARecoveryCodes(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "recovery-codes [--json]",
		Short: "Replace every recovery code with new ones (gated; shown once)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			codes, err := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
			if err != nil {
				return err
			}
			if _, err := c.MFARecoveryCodes(cmd.Context(), codes); err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(struct {
					RecoveryCodes []string `json:"recovery_codes"`
				}{codes})
			}
			fmt.Fprintf(g.io.Stdout, "New recovery codes (the old ones no longer work); shown only now:\n\n")
			for _, rc := range codes {
				fmt.Fprintf(g.io.Stdout, "  %s\n", rc)
			}
			return nil
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func newAdminCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "The TCP admin listener (admin.listen)"}
	tok := &cobra.Command{Use: "token", Short: "Admin bearer tokens for admin.listen"}
	var name string
	var jsonOut bool
	newTok := &cobra.Command{
		Use:   "new --name NAME [--json]",
		Short: "Make an admin bearer token: printed once on stdout, its admin.tokens entry on stderr",
		Long: `token new makes a random admin bearer token (ksa_...) for the TCP admin listener. Put the printed
entry (name and SHA-256; the server never stores the token) under admin.tokens in keystile.yaml
and restart the server. The token goes to the remote CLI in KEYSTILE_ADMIN_TOKEN_FILE.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !adminTokenName(name) {
				return usagef("--name must match [a-z0-9][a-z0-9_-]{0,31}")
			}
			t, d, err := admin.NewAdminToken(nil)
			if err != nil {
				return err
			}
			defer t.Wipe()
			if jsonOut {
				return g.printJSON(struct {
					Token  string `json:"token"`
					Name   string `json:"name"`
					SHA256 string `json:"sha256"`
				}{string(t.Reveal()), name, hex.EncodeToString(d[:])})
			}
			fmt.Fprintf(g.io.Stdout, "%s\n", t.Reveal())
			fmt.Fprintf(g.io.Stderr, "Shown once. Add to keystile.yaml and restart the server:\nadmin:\n  tokens:\n    - name: %s\n      sha256: %s\n", name, hex.EncodeToString(d[:]))
			return nil
		},
	}
	newTok.Flags().StringVar(&name, "name", "", "who holds the token (shown in logs and audit records)")
	jsonFlag(newTok, &jsonOut)
	tok.AddCommand(newTok)
	cmd.AddCommand(tok)
	return cmd
}

func adminTokenName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '_' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}
