package fwdproxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/venue"
)

// Defaults.
const (
	DefaultMaxTunnels       = 1024
	DefaultHandshakeTimeout = 10 * time.Second
)

// Tokens verifies client tokens. *token.Service satisfies it; Verify must
// be safe for concurrent use and fast (no store on the hot path).
type Tokens interface {
	Verify(ctx context.Context, raw string, r token.VerifyRequest) (*token.Token, error)
}

// Certs issues TLS server certificates for a host. *localca.CA satisfies
// it; Leaf must be safe for concurrent use and cache what it issues.
type Certs interface {
	Leaf(ctx context.Context, names ...string) (*tls.Certificate, error)
}

// AuthLimiter limits failed authentications, shared with the gateway
// (*gateway.Gateway satisfies it). AuthFailure records that the token
// presented from src failed with err (token.ErrMalformed for an
// unreadable Proxy-Authorization; a verification error otherwise) and
// reports whether that failure is over its limit: then the answer is 429
// with rule, after wait. Only guesses (unknown tokens, per source) and
// retries of a revoked or expired token (per source and token) count, so
// one client cannot lock out the others sharing its address.
type AuthLimiter interface {
	AuthFailure(src netip.Addr, err error) (wait time.Duration, rule string, limited bool)
}

// Route is one address a venue is reached at: the host and port of its
// base URL (live) or test base URL (test). Several venues may share an
// address; a tunnel is then bound to the one its token may use.
type Route struct {
	Venue string
	Host  string // normalized (localca.NormalizeName)
	Port  uint16
	// Live: the address is the venue's live endpoint; Test: its test
	// endpoint (test_base_url, or the base URL of a sandbox venue). Both
	// may be true.
	Live, Test bool
	// HasTest: the venue has a test endpoint (here or elsewhere), so a
	// kst_test_ token reaching its live address is sent there.
	HasTest bool
	// Shaper renders keystile's refusals in the venue's format; nil keeps
	// keystile's JSON.
	Shaper venue.ErrorShaper
}

// Addr is the route's address, host:port.
func (r Route) Addr() string { return JoinAuthority(r.Host, r.Port) }

// Options configure New. Zero values of optional fields are safe.
type Options struct {
	// Handler is the gateway: it serves every request read inside a
	// tunnel, rewritten to /<venue>/<path>. Required.
	Handler http.Handler
	// Tokens verifies the CONNECT's token. Required.
	Tokens Tokens
	// Certs issues the tunnel's server certificates. Required.
	Certs Certs
	// Limiter limits failed authentications per source; if nil, none.
	Limiter AuthLimiter
	// Events receives one event per CONNECT (refused, or the tunnel
	// opened); if nil, they are dropped. Requests inside tunnels are
	// recorded by the gateway.
	Events audit.Sink
	// Routes are the venue addresses served; SetRoutes replaces them.
	Routes []Route
	// MaxTunnels bounds open tunnels (503 beyond). If 0, DefaultMaxTunnels.
	MaxTunnels int
	// HandshakeTimeout bounds a tunnel's TLS handshake. If 0,
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Timeouts and limits of the CONNECT requests and of the HTTP served
	// inside tunnels (as the gateway's listener). Zero means 5s, 30s, 60s,
	// 120s and 64 KiB.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// Logger; if nil, logs are discarded.
	Logger *slog.Logger
}

// Proxy is the forward-proxy listener. It is safe for concurrent use.
type Proxy struct {
	o       Options
	log     *slog.Logger
	routes  atomic.Pointer[map[string][]Route] // addr -> routes
	outer   *http.Server
	inner   *http.Server
	conns   *chanListener
	tunnels atomic.Int64
	once    sync.Once
}

// New builds a proxy; Serve starts it.
func New(o Options) (*Proxy, error) {
	if o.Handler == nil || o.Tokens == nil || o.Certs == nil {
		return nil, errors.New("fwdproxy: a handler, a token verifier and a certificate source are required")
	}
	if o.MaxTunnels <= 0 {
		o.MaxTunnels = DefaultMaxTunnels
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.Events == nil {
		o.Events = audit.Discard{}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 5*time.Second)
	def(&o.ReadTimeout, 30*time.Second)
	def(&o.WriteTimeout, 60*time.Second)
	def(&o.IdleTimeout, 120*time.Second)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	p := &Proxy{o: o, log: o.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if err := p.SetRoutes(o.Routes); err != nil {
		return nil, err
	}
	errLog := slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)
	p.outer = &http.Server{
		Handler:           http.HandlerFunc(p.serveOuter),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    min(o.MaxHeaderBytes, 16<<10),
		ErrorLog:          errLog,
	}
	p.conns = newChanListener()
	p.inner = &http.Server{
		Handler:           http.HandlerFunc(p.serveTunnelled),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          errLog,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tunnelConn); ok {
				return context.WithValue(ctx, bindingKey{}, tc.b)
			}
			return ctx
		},
	}
	return p, nil
}

// SetRoutes replaces the served venue addresses as one set. Tunnels open
// to an address no longer routed to their venue answer 421 from their
// next request on.
func (p *Proxy) SetRoutes(rs []Route) error {
	m := map[string][]Route{}
	for _, r := range rs {
		if r.Venue == "" || r.Port == 0 || strings.ContainsAny(r.Venue, "/?#%") {
			return fmt.Errorf("fwdproxy: invalid route %+v", r)
		}
		h, err := normalizeHost(r.Host)
		if err != nil || h != r.Host {
			return fmt.Errorf("fwdproxy: route host %q is not normalized", r.Host)
		}
		m[r.Addr()] = append(m[r.Addr()], r)
	}
	p.routes.Store(&m)
	return nil
}

// Serve accepts CONNECT requests on ln until Shutdown or Close.
func (p *Proxy) Serve(ln net.Listener) error {
	p.conns.setAddr(ln.Addr())
	go func() { _ = p.inner.Serve(p.conns) }()
	return p.outer.Serve(ln)
}

// Shutdown stops accepting tunnels and requests, closes idle tunnels and
// waits for requests in flight (or ctx).
func (p *Proxy) Shutdown(ctx context.Context) error {
	err := p.outer.Shutdown(ctx)
	if ierr := p.inner.Shutdown(ctx); err == nil {
		err = ierr
	}
	p.once.Do(p.conns.close)
	return err
}

// Close closes every listener and tunnel at once.
func (p *Proxy) Close() error {
	err := p.outer.Close()
	if ierr := p.inner.Close(); err == nil {
		err = ierr
	}
	p.once.Do(p.conns.close)
	return err
}

// Tunnels is the number of open tunnels.
func (p *Proxy) Tunnels() int { return int(p.tunnels.Load()) }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

func sourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// refusal is one of the proxy's own answers to a CONNECT or a plain
// request, with a fixed public message.
type refusal struct {
	status int
	code   string
	msg    string
}

var (
	errNotConnect   = refusal{http.StatusForbidden, "plain_http_refused", "keystile's forward proxy only tunnels HTTPS (CONNECT); plain http:// proxy requests are refused: use the venue's https:// URL with HTTPS_PROXY"}
	errNotProxied   = refusal{http.StatusBadRequest, "bad_request", "this is keystile's forward proxy: send CONNECT host:443 (HTTPS_PROXY)"}
	errBadTarget    = refusal{http.StatusBadRequest, "bad_request", "malformed CONNECT target: expected host:port"}
	errNotVenue     = refusal{http.StatusForbidden, "not_a_venue", "CONNECT refused: the host is not a configured venue's address"}
	errProxyAuth    = refusal{http.StatusProxyAuthRequired, "proxy_auth_required", "a keystile token is required in Proxy-Authorization (HTTPS_PROXY=http://keystile:kst_...@host:port)"}
	errTokenRefused = refusal{http.StatusForbidden, "forbidden", "this keystile token may not open a tunnel to this venue"}
	errAmbiguous    = refusal{http.StatusForbidden, "ambiguous_venue", "several venues this token may use share this host; mint a token for one of them"}
	errAuthBlocked  = refusal{http.StatusTooManyRequests, "too_many_failures", "too many failed authentications; retry later"}
	errTooMany      = refusal{http.StatusServiceUnavailable, "too_many_tunnels", "too many open tunnels; retry later"}
	errNoCert       = refusal{http.StatusBadGateway, "certificate_unavailable", "keystile cannot issue a certificate for this host (see the server log)"}
)

func (p *Proxy) writeRefusal(w http.ResponseWriter, rf refusal, reqID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Keystile-Request-Id", reqID)
	if rf.status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="keystile"`)
	}
	if rf.status >= 400 {
		// The client must not reuse the connection for another CONNECT
		// after a refusal.
		h.Set("Connection", "close")
	}
	w.WriteHeader(rf.status)
	type detail struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
	_ = json.NewEncoder(w).Encode(struct {
		Error detail `json:"error"`
	}{detail{rf.code, rf.msg, reqID}})
}

// serveOuter answers the proxy listener: CONNECT opens a tunnel; a
// plain-HTTP proxy request is refused; GET /-/healthz answers ok.
func (p *Proxy) serveOuter(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := newRequestID()
	ev := audit.Event{Time: start, RequestID: reqID, Method: r.Method, Source: sourceAddr(r).String(), Operation: "proxy.connect"}
	refuse := func(rf refusal, rule string, err error) {
		p.writeRefusal(w, rf, reqID)
		ev.Status, ev.Decision, ev.Rule, ev.Latency = rf.status, audit.Deny, rule, time.Since(start)
		if err != nil {
			ev.Error = err.Error()
		}
		p.o.Events.Record(r.Context(), ev)
	}
	if r.Method != http.MethodConnect {
		if r.URL.IsAbs() || r.URL.Host != "" {
			// Absolute-form: a plain HTTP_PROXY request. Never forwarded.
			ev.Path = r.URL.Scheme + "://" + r.URL.Host
			refuse(errNotConnect, "proxy.plain_http", nil)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path == "/-/healthz" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
			return
		}
		p.writeRefusal(w, errNotProxied, reqID)
		return
	}
	host, port, err := ParseAuthority(r.RequestURI)
	if err != nil {
		refuse(errBadTarget, "proxy.bad_target", err)
		return
	}
	addr := JoinAuthority(host, port)
	ev.Path = addr
	routes := (*p.routes.Load())[addr]
	if len(routes) == 0 {
		// Checked before the token: a refused host gets the same answer
		// from anyone, and no connection is ever made to it.
		refuse(errNotVenue, "proxy.host_not_allowed", nil)
		return
	}
	src := sourceAddr(r)
	// limited answers 429 when a failed authentication is over the shared
	// limit (checked only after the token failed: one that verifies is
	// never refused by it).
	limited := func(err error) bool {
		if p.o.Limiter == nil {
			return false
		}
		wait, rule, over := p.o.Limiter.AuthFailure(src, err)
		if over {
			w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, wait)/time.Second)))
			refuse(errAuthBlocked, rule, err)
		}
		return over
	}
	raw, err := ParseProxyAuthorization(r.Header.Get("Proxy-Authorization"))
	if err != nil {
		rule := "token.missing"
		if !errors.Is(err, ErrNoCredentials) {
			rule = "token.malformed"
			if limited(token.ErrMalformed) {
				return
			}
		}
		refuse(errProxyAuth, rule, nil)
		return
	}
	route, tok, err := p.bind(r.Context(), raw, routes, src)
	if tok != nil {
		ev.TokenID = string(tok.ID)
	} else {
		var re *token.RefusedError
		if errors.As(err, &re) {
			ev.TokenID = string(re.ID)
		}
	}
	ev.Venue = route.Venue
	if err != nil {
		switch {
		case errors.Is(err, errAmbiguousVenue):
			refuse(errAmbiguous, "proxy.ambiguous_venue", err)
		case errors.Is(err, token.ErrFrozen), errors.Is(err, token.ErrVenue), errors.Is(err, token.ErrSource), errors.Is(err, token.ErrEnvironment):
			refuse(errTokenRefused, "token."+tokenRule(err), err)
		default:
			if limited(err) {
				return
			}
			refuse(errProxyAuth, "token."+tokenRule(err), err)
		}
		return
	}
	if n := p.tunnels.Add(1); n > int64(p.o.MaxTunnels) {
		p.tunnels.Add(-1)
		refuse(errTooMany, "proxy.too_many_tunnels", nil)
		return
	}
	release := func() { p.tunnels.Add(-1) }
	// The certificate is issued (or taken from the cache) before the
	// tunnel is acknowledged, so that a CA problem is a clear answer
	// rather than a failed handshake.
	if _, err := p.o.Certs.Leaf(r.Context(), host); err != nil {
		release()
		p.log.Error("fwdproxy: cannot issue a certificate", "host", host, "err", err)
		refuse(errNoCert, "proxy.certificate", err)
		return
	}
	b := &binding{venue: route.Venue, host: host, port: port, token: raw, shaper: route.Shaper}
	// The event's latency is keystile's decision, not the client's TLS
	// handshake that follows.
	ev.Latency = time.Since(start)
	if err := p.open(w, b, release); err != nil {
		p.log.Debug("fwdproxy: tunnel not opened", "host", addr, "err", err)
		ev.Status, ev.Decision, ev.Rule, ev.Error = http.StatusOK, audit.Error, "proxy.tunnel", err.Error()
	} else {
		ev.Status, ev.Decision, ev.Rule = http.StatusOK, audit.Allow, "proxy.tunnel"
	}
	p.o.Events.Record(r.Context(), ev)
}

var errAmbiguousVenue = errors.New("fwdproxy: several venues the token may use share this address")

// bind verifies raw against the venues served at an address and returns
// the one route the token may use there.
func (p *Proxy) bind(ctx context.Context, raw string, routes []Route, src netip.Addr) (Route, *token.Token, error) {
	isTest := strings.HasPrefix(raw, "kst_test_")
	var ok []Route
	var okTok *token.Token
	var firstErr error
	for _, r := range routes {
		// The endpoint the gateway will send this token's requests to:
		// a kst_test_ token reaches a venue's test endpoint, a kst_live_
		// token its live one. Refused here when the address the SDK
		// asked for is not that endpoint's (a live token at a testnet
		// host would otherwise trade live).
		allowed := isTest && (r.Test || r.Live && r.HasTest) || !isTest && r.Live
		testEndpoint := isTest
		if !allowed {
			testEndpoint = !isTest // verification then fails with ErrEnvironment
		}
		tok, err := p.o.Tokens.Verify(ctx, raw, token.VerifyRequest{Venue: r.Venue, Source: src, TestEndpoint: testEndpoint})
		if err == nil {
			ok = append(ok, r)
			okTok = tok
			continue
		}
		if firstErr == nil || errors.Is(firstErr, token.ErrVenue) && !errors.Is(err, token.ErrVenue) {
			firstErr = err
		}
	}
	switch len(ok) {
	case 1:
		return ok[0], okTok, nil
	case 0:
		return Route{}, nil, firstErr
	default:
		venues := make([]string, 0, len(ok))
		for _, r := range ok {
			venues = append(venues, r.Venue)
		}
		slices.Sort(venues)
		return Route{}, okTok, fmt.Errorf("%w: %s", errAmbiguousVenue, strings.Join(venues, ", "))
	}
}

func tokenRule(err error) string {
	for _, c := range []struct {
		e    error
		name string
	}{{token.ErrMalformed, "malformed"}, {token.ErrUnknown, "unknown"}, {token.ErrExpired, "expired"}, {token.ErrRevoked, "revoked"},
		{token.ErrKilled, "killed"}, {token.ErrFrozen, "frozen"}, {token.ErrVenue, "venue"}, {token.ErrSource, "source"}, {token.ErrEnvironment, "environment"}} {
		if errors.Is(err, c.e) {
			return c.name
		}
	}
	return "invalid"
}

func normalizeHost(h string) (string, error) {
	// Routes and CONNECT targets share one normal form.
	n, _, err := ParseAuthority(JoinAuthority(h, 1))
	return n, err
}
