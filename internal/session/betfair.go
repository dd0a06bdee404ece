package session

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/keystile/keystile/internal/secret"
)

// BetfairMode selects how a Betfair session is obtained.
type BetfairMode string

const (
	// BetfairCertLogin is the non-interactive login with a client
	// certificate (mutual TLS), POST /api/certlogin.
	BetfairCertLogin BetfairMode = "certlogin"
	// BetfairLogin is the interactive login, POST /api/login.
	BetfairLogin BetfairMode = "login"
)

// Betfair identity endpoints (global jurisdiction).
const (
	DefaultBetfairIdentityURL     = "https://identitysso.betfair.com"
	DefaultBetfairCertIdentityURL = "https://identitysso-cert.betfair.com"
)

// Betfair credential field names.
const (
	FieldAppKey     = "app_key"
	FieldUsername   = "username"
	FieldPassword   = "password"
	FieldClientCert = "client_cert"
	FieldClientKey  = "client_key"
)

// BetfairOptions configures a Betfair session source. The zero value of
// every field except Credential (and CertClient in certlogin mode) is safe.
type BetfairOptions struct {
	// Mode is BetfairCertLogin (default) or BetfairLogin.
	Mode BetfairMode
	// IdentityURL is the base URL for login, keepAlive and logout. If
	// empty, DefaultBetfairIdentityURL.
	IdentityURL string
	// CertIdentityURL is the base URL for certlogin. If empty,
	// DefaultBetfairCertIdentityURL.
	CertIdentityURL string
	// Credential gives access to app_key, username, password and, for
	// certlogin, client_cert and client_key (PEM). Required.
	Credential CredentialFunc
	// HTTPClient is used for login, keepAlive and logout. If nil, a client
	// with a 30 s timeout that follows no redirects.
	HTTPClient *http.Client
	// CertClient builds the client for one certlogin from the client
	// certificate of the credential. Required in certlogin mode.
	CertClient func(cert *tls.Certificate) (*http.Client, error)
	// SessionLifetime is the venue's session idle lifetime. If zero, 12 h
	// (Betfair's default in most jurisdictions; 20 min in some).
	SessionLifetime time.Duration
	// KeepAliveInterval is how often the session is kept alive. If zero,
	// SessionLifetime/4; it must be less than SessionLifetime/2.
	KeepAliveInterval time.Duration
	// LoginsPerMinute bounds logins (Betfair bans after 100 per minute).
	// If zero, 20. LoginBurst is the burst allowed; if zero, 3.
	LoginsPerMinute int
	LoginBurst      int
	// LoginTimeout bounds one login. If zero, 30 s.
	LoginTimeout time.Duration
	// Logger receives operational messages (never secrets). Nil discards.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// BetfairError is a FAIL answer from the Betfair identity service. Code is
// Betfair's error code (INVALID_USERNAME_OR_PASSWORD, ACCOUNT_NOW_LOCKED,
// CERT_AUTH_REQUIRED, TEMPORARY_BAN_TOO_MANY_REQUESTS, NO_SESSION, ...),
// or UNKNOWN when the answer carried none that looks like a code.
type BetfairError struct {
	Op   string
	Code string
}

func (e *BetfairError) Error() string {
	return "session: betfair " + e.Op + ": " + e.Code
}

// Betfair is a Source of Betfair session tokens. It keeps the session
// alive in the background until Close.
type Betfair struct {
	opt     BetfairOptions
	client  *http.Client
	lim     *rate.Limiter
	fl      *flight
	log     *slog.Logger
	now     func() time.Time
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// NewBetfair validates opt and starts the keep-alive loop. The first login
// happens on the first Token call.
func NewBetfair(opt BetfairOptions) (*Betfair, error) {
	if opt.Mode == "" {
		opt.Mode = BetfairCertLogin
	}
	if opt.Mode != BetfairCertLogin && opt.Mode != BetfairLogin {
		return nil, fmt.Errorf("session: betfair: unknown mode %q", opt.Mode)
	}
	if opt.Credential == nil {
		return nil, errors.New("session: betfair: Credential is required")
	}
	if opt.Mode == BetfairCertLogin && opt.CertClient == nil {
		return nil, errors.New("session: betfair: CertClient is required for certlogin")
	}
	if opt.IdentityURL == "" {
		opt.IdentityURL = DefaultBetfairIdentityURL
	}
	if opt.CertIdentityURL == "" {
		opt.CertIdentityURL = DefaultBetfairCertIdentityURL
	}
	opt.IdentityURL = strings.TrimSuffix(opt.IdentityURL, "/")
	opt.CertIdentityURL = strings.TrimSuffix(opt.CertIdentityURL, "/")
	if opt.SessionLifetime == 0 {
		opt.SessionLifetime = 12 * time.Hour
	}
	if opt.SessionLifetime < 0 {
		return nil, errors.New("session: betfair: negative SessionLifetime")
	}
	if opt.KeepAliveInterval == 0 {
		opt.KeepAliveInterval = opt.SessionLifetime / 4
	}
	if opt.KeepAliveInterval <= 0 || opt.KeepAliveInterval >= opt.SessionLifetime/2 {
		return nil, errors.New("session: betfair: KeepAliveInterval must be positive and less than half the session lifetime")
	}
	if opt.LoginsPerMinute == 0 {
		opt.LoginsPerMinute = 20
	}
	if opt.LoginBurst == 0 {
		opt.LoginBurst = 3
	}
	if opt.LoginsPerMinute < 0 || opt.LoginsPerMinute > 100 || opt.LoginBurst < 0 {
		return nil, errors.New("session: betfair: LoginsPerMinute must be in 1..100 and LoginBurst positive")
	}
	if opt.LoginTimeout <= 0 {
		opt.LoginTimeout = 30 * time.Second
	}
	b := &Betfair{
		opt:     opt,
		client:  opt.HTTPClient,
		lim:     rate.NewLimiter(rate.Every(time.Minute/time.Duration(opt.LoginsPerMinute)), opt.LoginBurst),
		log:     discardLogger(opt.Logger),
		now:     clockOrNow(opt.Now),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if b.client == nil {
		b.client = defaultClient()
	}
	b.fl = &flight{now: b.now, timeout: opt.LoginTimeout, fetch: b.login, log: b.log}
	go b.keepAliveLoop()
	return b, nil
}

// Token returns the current session, logging in first if there is none
// (one login at a time, however many callers).
func (b *Betfair) Token(ctx context.Context) (Token, error) { return b.fl.token(ctx) }

// Invalidate marks t stale; the next Token call logs in again unless a
// newer session is already in place.
func (b *Betfair) Invalidate(t Token) { b.fl.invalidate(t) }

// Apply sets the X-Application and X-Authentication headers of r for t.
func (b *Betfair) Apply(r *http.Request, t Token) {
	r.Header.Set("X-Application", string(t.appKey.Reveal()))
	r.Header.Set("X-Authentication", string(t.Value.Reveal()))
}

// Logout ends the current session at Betfair, if there is one.
func (b *Betfair) Logout(ctx context.Context) error {
	t, ok := b.fl.current()
	if !ok {
		return nil
	}
	b.fl.invalidate(t)
	return b.identityCall(ctx, "logout", t)
}

// Close stops the keep-alive loop and logs out. Token fails with ErrClosed
// afterwards. Close is idempotent.
func (b *Betfair) Close(ctx context.Context) error {
	var err error
	b.once.Do(func() {
		close(b.stop)
		<-b.stopped
		if t, ok := b.fl.close(); ok {
			err = b.identityCall(ctx, "logout", t)
		}
	})
	return err
}

func (b *Betfair) keepAliveLoop() {
	defer close(b.stopped)
	tick := time.NewTicker(b.opt.KeepAliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		t, ok := b.fl.current()
		if !ok {
			continue
		}
		// A session refreshed less than half an interval ago is fresh enough;
		// so the age at keep-alive stays below 1.5 intervals < lifetime/2.
		last := t.Expiry.Add(-b.opt.SessionLifetime)
		if b.now().Sub(last) < b.opt.KeepAliveInterval/2 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opt.LoginTimeout)
		err := b.identityCall(ctx, "keepAlive", t)
		cancel()
		var be *BetfairError
		switch {
		case err == nil:
			b.fl.update(t.gen, b.now().Add(b.opt.SessionLifetime))
		case errors.As(err, &be):
			b.log.Warn("session: betfair keep-alive refused, session dropped", "code", be.Code)
			b.fl.invalidate(t)
		default:
			b.log.Warn("session: betfair keep-alive failed", "err", err)
		}
	}
}

// betfairAnswer covers the login, keepAlive and logout answers (token,
// status, error) and the certlogin answer (sessionToken, loginStatus).
type betfairAnswer struct {
	Token        string `json:"token"`
	Status       string `json:"status"`
	Error        string `json:"error"`
	SessionToken string `json:"sessionToken"`
	LoginStatus  string `json:"loginStatus"`
}

// login runs one login; it is the flight's fetch.
func (b *Betfair) login(ctx context.Context) (Token, error) {
	op := string(b.opt.Mode)
	if r := b.lim.ReserveN(b.now(), 1); !r.OK() {
		return Token{}, &RateLimitedError{RetryAfter: time.Minute}
	} else if d := r.DelayFrom(b.now()); d > 0 {
		r.CancelAt(b.now())
		return Token{}, &RateLimitedError{RetryAfter: d}
	}
	var tok Token
	err := b.opt.Credential(ctx, func(f map[string]secret.Value) error {
		for _, name := range []string{FieldAppKey, FieldUsername, FieldPassword} {
			if f[name].IsZero() {
				return &MissingFieldError{Field: name}
			}
		}
		client, url := b.client, b.opt.IdentityURL+"/api/login"
		if b.opt.Mode == BetfairCertLogin {
			if f[FieldClientCert].IsZero() {
				return &MissingFieldError{Field: FieldClientCert}
			}
			if f[FieldClientKey].IsZero() {
				return &MissingFieldError{Field: FieldClientKey}
			}
			cert, err := tls.X509KeyPair(f[FieldClientCert].Reveal(), f[FieldClientKey].Reveal())
			if err != nil {
				return errors.New("session: betfair certlogin: client certificate or key invalid")
			}
			client, err = b.opt.CertClient(&cert)
			if err != nil {
				return fmt.Errorf("session: betfair certlogin: client: %w", err)
			}
			defer client.CloseIdleConnections()
			url = b.opt.CertIdentityURL + "/api/certlogin"
		}
		body := encodeForm(
			formField{"username", f[FieldUsername].Reveal()},
			formField{"password", f[FieldPassword].Reveal()},
		)
		defer secret.Wipe(body)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("session: betfair %s: %w", op, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("X-Application", string(f[FieldAppKey].Reveal()))
		ans, err := b.do(client, req, op)
		if err != nil {
			return err
		}
		status, token, code := ans.Status, ans.Token, ans.Error
		if b.opt.Mode == BetfairCertLogin {
			status, token, code = ans.LoginStatus, ans.SessionToken, ans.LoginStatus
		}
		if status != "SUCCESS" || token == "" {
			if code == "" {
				code = status
			}
			code = sanitizeCode(code)
			if f[FieldUsername].EqualBytes([]byte(code)) || f[FieldPassword].EqualBytes([]byte(code)) {
				code = "UNKNOWN"
			}
			return &BetfairError{Op: op, Code: code}
		}
		tok = Token{
			Value:  secret.FromString(token),
			Expiry: b.now().Add(b.opt.SessionLifetime),
			appKey: f[FieldAppKey].Clone(),
		}
		return nil
	})
	if err != nil {
		return Token{}, err
	}
	b.log.Info("session: betfair login succeeded", "mode", op)
	return tok, nil
}

// identityCall runs keepAlive or logout for t.
func (b *Betfair) identityCall(ctx context.Context, op string, t Token) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.opt.IdentityURL+"/api/"+op, http.NoBody)
	if err != nil {
		return fmt.Errorf("session: betfair %s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	b.Apply(req, t)
	ans, err := b.do(b.client, req, op)
	if err != nil {
		return err
	}
	if ans.Status != "SUCCESS" {
		code := ans.Error
		if code == "" {
			code = ans.Status
		}
		return &BetfairError{Op: op, Code: sanitizeCode(code)}
	}
	return nil
}

func (b *Betfair) do(client *http.Client, req *http.Request, op string) (*betfairAnswer, error) {
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error names the URL only; the body is never part of it.
		return nil, fmt.Errorf("session: betfair %s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := readBody(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("session: betfair %s: read: %w", op, err)
	}
	var ans betfairAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		if resp.StatusCode != http.StatusOK {
			return nil, &HTTPStatusError{Op: "betfair " + op, Status: resp.StatusCode}
		}
		return nil, fmt.Errorf("session: betfair %s: malformed answer", op)
	}
	return &ans, nil
}

// sanitizeCode keeps codes that look like Betfair/OAuth error codes
// (letters, digits, '_', '-', '.', at most 64) and replaces anything else,
// so that a server echoing request data cannot smuggle it into an error.
func sanitizeCode(s string) string {
	if s == "" || len(s) > 64 {
		return "UNKNOWN"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "UNKNOWN"
		}
	}
	return s
}

var _ Source = (*Betfair)(nil)
