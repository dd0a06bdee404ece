package app

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// ErrServerRunning refuses offline maintenance while a server holds the
// data directory.
var ErrServerRunning = errors.New("a keystile server is running on this data directory: stop it first")

var (
	_ admin.MFA   = (*mfa.Manager)(nil)
	_ mfa.Secrets = (*vault.Vault)(nil)
	_ mfa.Store   = (*sqlite.MFAStore)(nil)
	_ audit.Sink  = (*audit.Log)(nil)
)

// mfaIssuer is admin.mfa.issuer with its default.
func mfaIssuer(cfg *config.Config) string {
	if cfg.Admin.MFA.Issuer != "" {
		return cfg.Admin.MFA.Issuer
	}
	return config.Default().Admin.MFA.Issuer
}

// newMFA builds the admin second factor on the database and vault.
func newMFA(cfg *config.Config, db Stores, v *vault.Vault, sink audit.Sink, log *slog.Logger, now func() time.Time) (*mfa.Manager, error) {
	m := cfg.Admin.MFA
	return mfa.New(mfa.Options{Store: db.MFA(), Secrets: v, Audit: sink, Logger: log, Now: now,
		SessionTTL: m.SessionTTL, MaxFailures: m.MaxFailures, Lockout: m.Lockout, MaxLockout: m.MaxLockout})
}

// adminTCP turns admin.listen and its keys into the admin server's TCP
// options (nil when admin.listen is not set).
func adminTCP(cfg *config.Config) (*admin.TCPOptions, error) {
	a := cfg.Admin
	if a.Listen == "" {
		return nil, nil
	}
	allow, err := admin.NewAllowList(a.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	o := &admin.TCPOptions{Addr: a.Listen, Allow: allow}
	for _, t := range a.Tokens {
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("admin.tokens: %s: sha256 must be 64 hex digits", t.Name)
		}
		o.Tokens = append(o.Tokens, admin.BearerToken{Name: t.Name, Digest: [32]byte(b)})
	}
	if a.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("admin.tls_cert/tls_key: %w", err)
		}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

// ResetMFAOptions configure ResetMFAOffline.
type ResetMFAOptions struct {
	DataDir string
	Config  *config.Config
	Logger  *slog.Logger
	// Stdout receives the audit records when audit.sink is stdout.
	Stdout io.Writer
}

// ResetMFAOffline is the break-glass path for a lost authenticator with no
// recovery code left: with the server stopped, it opens the vault with the
// master key, removes the second factor (state, recovery codes, TOTP
// secret) and writes the reset to the audit log as principal
// "offline:uid:N". Holding the master key and the data directory is the
// authority here, as it is for everything offline.
func ResetMFAOffline(ctx context.Context, env Env, o ResetMFAOptions) error {
	sock := o.Config.Admin.Socket
	if sock == "" {
		sock = filepath.Join(o.DataDir, SocketFile)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("%w (%s answers); use `keystile mfa reset` with a code or a recovery code instead", ErrServerRunning, sock)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, v, err := OpenVault(ctx, env, o.DataDir, o.Config, log, nil)
	if err != nil {
		return err
	}
	defer func() { _ = v.Close(context.WithoutCancel(ctx)); _ = db.Close() }()
	keys, err := AuditKeys(ctx, v)
	if err != nil {
		return err
	}
	stdout := o.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	al, err := OpenAuditLog(ctx, o.Config, o.DataDir, keys, stdout, log)
	if err != nil {
		return fmt.Errorf("mfa reset: open the audit log: %w", err)
	}
	m, err := newMFA(o.Config, db, v, al, log, time.Now)
	if err != nil {
		_ = al.Close(ctx)
		return err
	}
	rerr := m.Reset(ctx, mfa.Attempt{Principal: mfa.Principal("offline:uid:" + strconv.Itoa(os.Getuid())), Action: "mfa.reset.offline",
		RequestID: "offline", Method: "OFFLINE", Path: "keystile mfa reset --offline"})
	if err := al.Close(ctx); err != nil && rerr == nil {
		rerr = fmt.Errorf("mfa reset: close the audit log: %w", err)
	}
	return rerr
}

// AdminTCPAddr is the TCP admin listener's address ("" if none).
func (s *Server) AdminTCPAddr() string { return s.admin.TCPAddr() }
