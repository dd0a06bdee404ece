package console

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/policy"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// MFA is what the console needs of the admin second factor
// (*mfa.Manager): whether one is enrolled, and the check the kill switch
// asks for. It is the same manager the admin API's gate uses.
type MFA interface {
	// Status reports the enrolment (State "active" gates actions).
	Status(ctx context.Context) (mfa.Status, error)
	// Authorize checks a code (RequireCode) for an action and audits it.
	Authorize(ctx context.Context, c mfa.Credentials, at mfa.Attempt) (mfa.Method, error)
}

// KillSwitch stops every bot at once. Trip freezes every token (and, if
// asked and supported, cancels open orders); Clear lifts what Trip did.
// The console checks confirmation and the second factor before calling
// Trip or Clear, and audits both.
type KillSwitch interface {
	State(ctx context.Context) (KillState, error)
	Trip(ctx context.Context, reason string, cancelOrders bool, by string) (KillState, error)
	Clear(ctx context.Context, by string) (KillState, error)
}

// KillState is the kill switch as the console shows it.
type KillState struct {
	Tripped      bool
	Since        time.Time
	Reason       string
	By           string
	CancelOrders bool
	// Frozen counts the tokens the switch froze; Notes says what else
	// happened (orders cancelled per venue, failures).
	Frozen int
	Notes  []string
	// CanCancelOrders says whether Trip can cancel open orders.
	CanCancelOrders bool
}

// ErrCancelUnsupported is returned by a KillSwitch that cannot cancel
// orders when asked to.
var ErrCancelUnsupported = errors.New("console: this kill switch cannot cancel orders")

// Detector describes one configured anomaly detector.
type Detector struct {
	Name        string
	Description string
	Action      string // alert, throttle, freeze, kill
	Enabled     bool
}

// Detectors lists the configured detectors (nil when none are built).
type Detectors interface {
	Detectors() []Detector
}

// Alerts gives the alerts raised recently (*alert.Dispatcher).
type Alerts interface {
	Recent(since time.Time) []alert.Alert
}

// PolicyInfo is one configured policy, for reading.
type PolicyInfo struct {
	Name string
	// Text is the policy as configured (YAML), Budgets and Venues name
	// what it limits.
	Text string
}

// ExplainRequest is a sample request to explain (see Explain).
type ExplainRequest struct {
	Token    string // token public id
	Method   string
	Venue    string
	Path     string // below the venue, starting with '/'
	Query    string
	Header   http.Header
	Body     []byte
	RefPrice string // "" or a positive decimal
}

// ExplainResult is the dry-run decision.
type ExplainResult struct {
	Decision, Rule, Reason, RetryAfter string
	Status                             int
	Token, Policy, Venue, Operation    string
	Notional                           string
	Order                              []string // "instrument BTCUSDT", ...
}

// BudgetRow is one budget window of one token.
type BudgetRow struct {
	TokenID, TokenName string
	policy.BudgetUse
}

// Policies reads the configured policies.
type Policies interface {
	Policies() []PolicyInfo
	// Explain decides a sample request without sending or reserving
	// anything; an error is the caller's (bad input: ErrInput) or the
	// server's.
	Explain(ctx context.Context, r ExplainRequest) (ExplainResult, error)
	// Budgets reads every live token's budget windows.
	Budgets(ctx context.Context) ([]BudgetRow, error)
}

// ErrInput marks errors whose message may be shown to the operator:
// they describe the input, never a value from the vault.
var ErrInput = errors.New("invalid input")

// AuditLog reads the durable audit log.
type AuditLog interface {
	// Search returns the newest records matching q (at most q.Limit,
	// newest first) and whether the search stopped early.
	Search(ctx context.Context, q AuditQuery) (AuditPage, error)
	// Record returns one record by seq (audit.ErrNotFound-like error
	// wrapping ErrNotFound if none).
	Record(ctx context.Context, seq uint64) (audit.Record, error)
	// Verify recomputes the chain and checkpoints.
	Verify(ctx context.Context) (audit.Report, error)
}

// ErrNotFound is returned for a record, token or page that does not
// exist.
var ErrNotFound = errors.New("not found")

// AuditPage is one search's answer.
type AuditPage struct {
	Records []audit.Record
	// Scanned is how many records were read; Partial says the search
	// stopped before the start of the log (narrow it with a time).
	Scanned uint64
	Partial bool
}

// Options configure New. Admin, AdminTokens, MFA, Stats, Policies, Audit
// and KillSwitch are required.
type Options struct {
	// Addr is the host:port to listen on (console.listen).
	Addr string
	// TLS terminates TLS (at least 1.2); nil serves plain HTTP, refused
	// unless Addr is a loopback address.
	TLS *tls.Config
	// Allow lists the client addresses that may connect; nil: loopback.
	Allow *admin.AllowList
	// AdminTokens are the credentials that log in (admin.tokens).
	AdminTokens []admin.BearerToken
	// Admin is the admin API in process (admin.Server.InProcess): every
	// console action is one of its requests.
	Admin http.Handler
	// MFA is the admin second factor.
	MFA MFA
	// Stats are the live figures (fed by the gateway).
	Stats *Stats
	// Policies, Audit and KillSwitch serve their pages.
	Policies   Policies
	Audit      AuditLog
	KillSwitch KillSwitch
	// Alerts and Detectors are optional.
	Alerts    Alerts
	Detectors Detectors
	// Events receives the console's own audit records (log-in, log-out,
	// kill switch); the admin API audits the rest.
	Events audit.Sink
	// SessionTTL and IdleTimeout bound sessions; zero means the config
	// defaults (1h, 15m).
	SessionTTL, IdleTimeout time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger; nil: discard.
	Logger *slog.Logger
}

// Console is the web console: its own listener and http.Server.
type Console struct {
	o        Options
	log      *slog.Logger
	now      func() time.Time
	tls      bool
	ln       net.Listener
	srv      *http.Server
	pages    map[string]*template.Template
	sessions *sessions
	limiter  *loginLimiter
	handler  http.Handler
	verify   verifyCache
}

// ErrNotLoopback refuses a plain-HTTP console off loopback.
var ErrNotLoopback = errors.New("console: the web console off loopback needs TLS (console.tls_cert, console.tls_key)")

// New checks o, parses the templates and builds the handler, without
// listening.
func New(o Options) (*Console, error) {
	if o.Admin == nil || o.MFA == nil || o.Stats == nil || o.Policies == nil || o.Audit == nil || o.KillSwitch == nil {
		return nil, errors.New("console: admin API, second factor, stats, policies, audit log and kill switch are required")
	}
	if len(o.AdminTokens) == 0 {
		return nil, errors.New("console: logging in needs at least one admin token (admin.tokens)")
	}
	c := &Console{o: o, log: o.Logger, now: o.Now, tls: o.TLS != nil}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.o.Events == nil {
		c.o.Events = audit.Discard{}
	}
	ttl, idle := o.SessionTTL, o.IdleTimeout
	if ttl <= 0 {
		ttl = config.DefaultConsoleSessionTTL
	}
	if idle <= 0 {
		idle = min(config.DefaultConsoleIdleTimeout, ttl)
	}
	c.sessions = &sessions{ttl: ttl, idle: idle, now: c.now, m: map[[32]byte]*session{}}
	c.limiter = newLoginLimiter(c.now)
	var err error
	if c.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	c.handler = c.routes()
	return c, nil
}

// Handler is the console's HTTP handler (what the listener serves,
// behind the allow list).
func (c *Console) Handler() http.Handler { return c.handler }

// Listen binds o.Addr: the allow list first (at accept), then TLS.
func (c *Console) Listen() error {
	if c.o.TLS == nil && !config.IsLoopbackListen(c.o.Addr) {
		return ErrNotLoopback
	}
	allow := c.o.Allow
	if allow == nil {
		allow = admin.LoopbackOnly()
	}
	ln, err := net.Listen("tcp", c.o.Addr)
	if err != nil {
		return fmt.Errorf("console: listen %s: %w", c.o.Addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); c.o.TLS == nil && (!ok || !ta.IP.IsLoopback()) {
		_ = ln.Close()
		return ErrNotLoopback
	}
	ln = allow.Listener(ln, func(addr net.Addr, n uint64) {
		c.log.Warn("console: refused a connection from an address not in console.allow_cidrs", "remote", addr.String(), "refused_total", n)
	})
	if c.o.TLS != nil {
		tc := c.o.TLS.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
		ln = tls.NewListener(ln, tc)
	}
	c.ln = ln
	c.srv = &http.Server{
		Handler:           allow.Handler(c.handler),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      90 * time.Second, // audit verification of a large log
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// Addr is the listener's address ("" before Listen).
func (c *Console) Addr() string {
	if c.ln == nil {
		return ""
	}
	return c.ln.Addr().String()
}

// URL is the console's base URL.
func (c *Console) URL() string {
	if c.tls {
		return "https://" + c.Addr()
	}
	return "http://" + c.Addr()
}

// Serve serves until Shutdown; nil after a clean shutdown.
func (c *Console) Serve() error {
	if err := c.srv.Serve(c.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the listener, waits for requests in flight and ends
// every session.
func (c *Console) Shutdown(ctx context.Context) error {
	var err error
	if c.srv != nil {
		err = c.srv.Shutdown(ctx)
	}
	c.sessions.mu.Lock()
	for _, s := range c.sessions.m {
		c.sessions.dropLocked(s)
	}
	c.sessions.mu.Unlock()
	return err
}

// parseTemplates builds one template set per page: the layout and the
// page's own file.
func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs()).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, f := range files {
		name := f[len("templates/") : len(f)-len(".html")]
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("console: templates: %w", err)
		}
		if _, err := t.ParseFS(templateFS, f); err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// clientAddr is the connection's address (never a forwarding header).
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return ap.Addr()
}
