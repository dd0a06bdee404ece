package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// Header names keystile reads or sets.
const (
	HeaderToken     = "Keystile-Token"
	HeaderRequestID = "Keystile-Request-Id"
)

// Defaults.
const (
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxResponseBytes = 32 << 20
)

// Tokens verifies client tokens. *token.Service satisfies it. Verify must
// be safe for concurrent use and not touch a store on the hot path.
type Tokens interface {
	Verify(ctx context.Context, raw string, r token.VerifyRequest) (*token.Token, error)
}

// Scrubber replaces registered secret values in bytes. *logging.Redactor
// satisfies it. Scrub returns its input unchanged (same slice) when
// nothing matches.
type Scrubber interface {
	Scrub(b []byte) []byte
}

// Endpoint is one upstream base URL of a venue and the transport that
// reaches it (upstream.Transport: allowlisted hosts, TLS, timeouts).
type Endpoint struct {
	BaseURL   *url.URL
	Transport http.RoundTripper
}

// Venue is a venue as the gateway serves it.
type Venue struct {
	ID   string
	Impl venue.Venue
	// Live serves kst_live_ tokens, Test serves kst_test_ tokens; either
	// may be nil (the token is then refused with ErrEnvironment).
	Live, Test *Endpoint
	// Retry is the retry policy; the session hooks are filled in from Impl
	// when it implements venue.Session.
	Retry upstream.RetryPolicy
	// Account names the venue account (its credential) for per-account
	// budgets and rates. "" means the venue id.
	Account string
	// Limiter, if set, models the venue's rate limits in place of Impl's
	// own venue.RateLimiter (e.g. Impl's wrapped in venue.Share).
	Limiter venue.RateLimiter
}

// Options configure New. Zero values of optional fields are safe.
type Options struct {
	Tokens Tokens     // required
	Venues []Venue    // the served venues
	Events audit.Sink // if nil, events are dropped
	// Scrubber scrubs answers; if nil only the secret header values sent
	// on the request are scrubbed (see scrub.go).
	Scrubber Scrubber
	// MaxBodyBytes caps request bodies. If 0, DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxResponseBytes caps upstream answers (they are buffered to be
	// scrubbed). If 0, DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Ready reports readiness for /-/readyz. If nil, always ready.
	Ready func() error
	// Health, if set, is added to /-/readyz's ready answer as "store":
	// the state of the stores behind the gateway (backend, PostgreSQL
	// reachable, Redis ok or down and the fallback in use), called after
	// Ready. Metadata only: states, never addresses or errors (they go
	// to the log). A not-ready answer is the usual error body.
	Health func() any
	// Logger receives error details. If nil, discard.
	Logger *slog.Logger
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// AuthFailureBurst and AuthFailureEvery limit failed authentications
	// (see authfail.go): unknown tokens per source address, refused known
	// tokens per (source, token); each may fail AuthFailureBurst times,
	// then once per AuthFailureEvery, beyond which it gets 429. A token
	// that verifies is never refused by these limits. Zero means
	// DefaultAuthFailureBurst and DefaultAuthFailureEvery.
	AuthFailureBurst int
	AuthFailureEvery time.Duration
	// Policy decides every request after the scope check, before
	// anything is signed. If nil, only token scopes apply.
	Policy *policy.Engine
	// Idem de-duplicates order placements; it needs Ledger, which stores
	// the keys' claims. If nil, orders are not de-duplicated (and
	// Idempotency-Key is refused).
	Idem *idem.Manager
	// Ledger makes a request's state durable before it is forwarded, in
	// one write: the intent record of every write, the budget an order
	// reserves and the idempotency key it claims (ledger.Store). If nil,
	// writes are forwarded without an intent record (unless Intents is
	// set) and orders under a policy with a budget are refused.
	Ledger ledger.Store
	// Intents, if set, keeps the intent records instead of Ledger (an
	// audit log outside the ledger's database): written after the ledger
	// write, a second durable write.
	Intents Intents
	// OnRetry, if set, is called with the venue id before each upstream
	// retry (metrics). It must not block.
	OnRetry func(venueID string)
	// Kill serves POST /-/kill (a bot trips the kill switch for itself);
	// if nil, that path answers 404.
	Kill Killer
	// Guard, if set, holds back what the anomaly detector contained
	// (throttled tokens, frozen venues and credentials).
	Guard Guard
}

// Guard is consulted for every request whose token verified, before its
// body is read and before anything is signed. Admit returns "" to admit
// the request, else the rule refusing it and, for a temporary limit, how
// long to wait (429 with Retry-After; without a wait, 403). It must be
// fast, safe for concurrent use and never block. *detect.Detector
// satisfies it.
type Guard interface {
	Admit(tokenID, venueID string, now time.Time) (rule string, retryAfter time.Duration)
}

// Gateway is the bot-facing handler. It is safe for concurrent use.
type Gateway struct {
	o       Options
	fails   *authFailures
	buffers *bufferPool
	log     *slog.Logger
	now     func() time.Time
	// venues is the served set, replaced whole by SetVenues; a request
	// keeps the set it started with.
	venues atomic.Pointer[map[string]*served]
}

type served struct {
	id         string
	account    string
	impl       venue.Venue
	carrier    venue.TokenCarrier
	limiter    venue.RateLimiter
	normalizer venue.Normalizer
	clientIDs  venue.ClientOrderIDs
	lookup     venue.OrderLookup
	orderIDs   venue.OrderIDReader
	prices     policy.PriceSource
	live, test *httputil.ReverseProxy
	liveBase   *url.URL
	testBase   *url.URL
	liveRT     http.RoundTripper // the signing retrier, for lookups
	testRT     http.RoundTripper
	credHdrs   []string
}

// New builds a gateway.
func New(o Options) (*Gateway, error) {
	if o.Tokens == nil {
		return nil, errors.New("gateway: no token verifier")
	}
	if o.Idem != nil && o.Ledger == nil {
		return nil, errors.New("gateway: idempotency needs a ledger to store its keys")
	}
	g := &Gateway{o: o, log: o.Logger, now: o.Now, buffers: newBufferPool(),
		fails: newAuthFailures(o.AuthFailureBurst, o.AuthFailureEvery, 0)}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.o.Events == nil {
		g.o.Events = audit.Discard{}
	}
	if g.o.MaxBodyBytes <= 0 {
		g.o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if g.o.MaxResponseBytes <= 0 {
		g.o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if err := g.SetVenues(o.Venues); err != nil {
		return nil, err
	}
	return g, nil
}

// SetVenues replaces the served venues as one set: every venue is built
// first, and a list with an invalid or duplicate venue changes nothing.
// Requests already being served finish with the set they started with.
// Rate-limit and session state live in each Venue's Impl, so passing the
// same Impl again keeps them.
func (g *Gateway) SetVenues(vs []Venue) error {
	set := make(map[string]*served, len(vs))
	for _, v := range vs {
		if _, dup := set[v.ID]; dup {
			return fmt.Errorf("gateway: venue %q configured twice", v.ID)
		}
		s, err := g.serve(v)
		if err != nil {
			return err
		}
		set[v.ID] = s
	}
	g.venues.Store(&set)
	return nil
}

// serve builds the served form of one venue: its capabilities, and a
// signing reverse proxy per endpoint.
func (g *Gateway) serve(v Venue) (*served, error) {
	if v.ID == "" || strings.ContainsAny(v.ID, "/?#%") || v.Impl == nil {
		return nil, fmt.Errorf("gateway: invalid venue %q", v.ID)
	}
	s := &served{id: v.ID, impl: v.Impl, account: v.Account}
	if s.account == "" {
		s.account = v.ID
	}
	s.carrier, _ = v.Impl.(venue.TokenCarrier)
	s.limiter, _ = v.Impl.(venue.RateLimiter)
	if v.Limiter != nil {
		s.limiter = v.Limiter
	}
	s.normalizer, _ = v.Impl.(venue.Normalizer)
	s.clientIDs, _ = v.Impl.(venue.ClientOrderIDs)
	s.lookup, _ = v.Impl.(venue.OrderLookup)
	s.orderIDs, _ = v.Impl.(venue.OrderIDReader)
	for _, h := range v.Impl.CredentialHeaders() {
		s.credHdrs = append(s.credHdrs, http.CanonicalHeaderKey(h))
	}
	retry := v.Retry
	if sess, ok := v.Impl.(venue.Session); ok {
		retry.SessionExpired = sess.SessionExpired
		retry.RefreshSession = sess.RefreshSession
	}
	if retry.Logger == nil {
		retry.Logger = g.log
	}
	if g.o.OnRetry != nil && retry.OnRetry == nil {
		id := v.ID
		retry.OnRetry = func() { g.o.OnRetry(id) }
	}
	for _, ep := range []struct {
		e    *Endpoint
		rp   **httputil.ReverseProxy
		base **url.URL
		rt   *http.RoundTripper
	}{{v.Live, &s.live, &s.liveBase, &s.liveRT}, {v.Test, &s.test, &s.testBase, &s.testRT}} {
		if ep.e == nil {
			continue
		}
		if ep.e.BaseURL == nil || ep.e.Transport == nil {
			return nil, fmt.Errorf("gateway: venue %q: endpoint needs a base URL and a transport", v.ID)
		}
		retrier, err := upstream.NewRetrier(&signer{impl: v.Impl, next: ep.e.Transport, credHdrs: s.credHdrs,
			secretHdrs: secretHeaders(v.Impl, s.credHdrs)}, retry)
		if err != nil {
			return nil, fmt.Errorf("gateway: venue %q: %w", v.ID, err)
		}
		rt := timed{retrier}
		router, _ := v.Impl.(venue.HostRouter)
		*ep.rp = g.proxy(ep.e.BaseURL, rt, s.limiter, router)
		*ep.base = ep.e.BaseURL
		*ep.rt = rt
		if ref, ok := v.Impl.(venue.PriceReference); ok && s.prices == nil && g.o.Policy != nil {
			// Reference prices come from the venue's public
			// ticker, unsigned, over the endpoint's transport.
			s.prices = policy.NewPriceSource(ref, ep.e.BaseURL, ep.e.Transport, 2*time.Second)
		}
	}
	if s.live == nil && s.test == nil {
		return nil, fmt.Errorf("gateway: venue %q has no endpoint", v.ID)
	}
	return s, nil
}

// timed adds the time spent in upstream round trips (until the answer's
// headers) to the request's state, for the event's UpstreamLatency.
type timed struct{ next http.RoundTripper }

func (t timed) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if st := stateOf(req.Context()); st != nil {
		d := time.Since(start)
		st.mu.Lock()
		st.upTime += d
		st.mu.Unlock()
	}
	return resp, err
}

// reqState is the request-scoped state shared by the handler, Rewrite, the
// signer and ModifyResponse (carried in the request context).
type reqState struct {
	id       string
	path     string // escaped venue path
	rawQuery string
	body     []byte

	// deferUnknown: an order placement with an idempotency ticket. An
	// unknown outcome is then not answered by the proxy's error handler
	// but recovered by the handler (lookup by client order id).
	deferUnknown bool

	mu       sync.Mutex
	upTime   time.Duration // time in upstream round trips (metrics)
	sent     [][]byte      // secret header values sent upstream, lower-cased (to scrub)
	upstream int
	err      error
	answer   []byte // the scrubbed answer (orders only, for replays)
	unknown  bool   // deferred unknown outcome
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
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

// splitVenue splits "/<venue>/<rest>" and refuses dot segments (in every
// form a server might resolve), encoded separators and empty segments
// anywhere in the path (cleanPath), so no path can climb into another
// venue's prefix upstream, and the path keystile classifies is the path
// the venue receives.
func splitVenue(escaped string) (string, string, bool) {
	if !strings.HasPrefix(escaped, "/") || !cleanPath(escaped) {
		return "", "", false
	}
	id, rest, _ := strings.Cut(escaped[1:], "/")
	if id == "" {
		return "", "", false
	}
	return id, "/" + rest, true
}

// bearer extracts the token from Authorization: Bearer or Keystile-Token.
func bearer(r *http.Request) (string, bool) {
	if v := r.Header.Get(HeaderToken); v != "" {
		return strings.TrimSpace(v), true
	}
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:]), true
	}
	return "", false
}

func sourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength > 0 {
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(rd, b); err != nil {
			return nil, err
		}
		// Anything past Content-Length is a protocol error the server
		// already handles; nothing more to read.
		return b, nil
	}
	return io.ReadAll(rd)
}

// proxy builds the reverse proxy for one endpoint.
// A venue.HostRouter picks the host of each path (Binance's futures
// hosts); the transport's allowlist must hold them.
func (g *Gateway) proxy(base *url.URL, rt http.RoundTripper, lim venue.RateLimiter, router venue.HostRouter) *httputil.ReverseProxy {
	modify := func(resp *http.Response) error { return g.modifyResponse(resp, nil) }
	if lim != nil {
		ao, _ := lim.(venue.AnswerObserver) // rate limits reported in the body
		modify = func(resp *http.Response) error {
			lim.Observe(resp, g.now())
			return g.modifyResponse(resp, ao)
		}
	}
	basePath := strings.TrimSuffix(base.EscapedPath(), "/")
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := stateOf(pr.In.Context())
			escaped := basePath + st.path
			host := base.Host
			if router != nil {
				if h := router.UpstreamHost(base.Host, st.path); h != "" {
					host = h
				}
			}
			u := &url.URL{Scheme: base.Scheme, Host: host, RawQuery: st.rawQuery}
			if p, err := url.PathUnescape(escaped); err == nil {
				u.Path = p
				if u.EscapedPath() != escaped {
					u.RawPath = escaped
				}
			}
			pr.Out.URL = u
			pr.Out.Host = ""
			stripHeaders(pr.Out.Header)
			body := st.body
			pr.Out.ContentLength = int64(len(body))
			if len(body) == 0 {
				pr.Out.Body = http.NoBody
				pr.Out.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
			} else {
				pr.Out.Body = io.NopCloser(bytes.NewReader(body))
				pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			}
		},
		Transport:      rt,
		BufferPool:     g.buffers,
		ModifyResponse: modify,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// stripHeaders removes what must not reach the venue: keystile's own
// headers, the bot's Authorization, cookies, forwarding, routing-override
// and upgrade headers (stripRouting) and Accept-Encoding (so the
// transport decompresses and answers can be scrubbed).
func stripHeaders(h http.Header) {
	stripRouting(h)
	for k := range h {
		if strings.HasPrefix(k, "Keystile-") {
			delete(h, k)
		}
	}
	for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Forwarded", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "Accept-Encoding", "X-Http-Method-Override",
		"X-Http-Method", "X-Method-Override", "Idempotency-Key"} {
		delete(h, k)
	}
}

// signer authenticates each attempt on a clone of the request.
type signer struct {
	impl     venue.Venue
	next     http.RoundTripper
	credHdrs []string
	// secretHdrs are the headers whose values the signer sent are scrubbed
	// from answers (see secretHeaders).
	secretHdrs []string
}

func (s *signer) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	st := stateOf(ctx)
	out := req.Clone(ctx)
	var body []byte
	if st != nil {
		body = st.body
	}
	for _, h := range s.credHdrs {
		out.Header.Del(h)
	}
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
	} else {
		out.Body = http.NoBody
	}
	out.ContentLength = int64(len(body))
	if seq, ok := s.impl.(venue.Sequencer); ok {
		release, err := seq.Sequence(ctx, out)
		if err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, err
		}
		defer release()
	}
	if err := s.impl.Authenticate(ctx, out, body); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &credentialError{err: err}
	}
	if st != nil {
		st.mu.Lock()
		for _, h := range s.secretHdrs {
			for _, v := range out.Header.Values(h) {
				st.addSent(v)
			}
		}
		st.mu.Unlock()
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return s.next.RoundTrip(out)
}

// modifyResponse buffers and scrubs the answer; ao, if set, sees the
// answer as the venue sent it.
func (g *Gateway) modifyResponse(resp *http.Response, ao venue.AnswerObserver) error {
	st := stateOf(resp.Request.Context())
	var sent [][]byte
	if st != nil {
		st.mu.Lock()
		st.upstream = resp.StatusCode
		sent = st.sent
		st.mu.Unlock()
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		_ = resp.Body.Close()
		return errUnscrubbable
	}
	scrub := g.scrubberFor(sent)
	scrub.header(resp.Header)
	resp.Header.Del("Set-Cookie")
	resp.Header.Del(HeaderError) // only keystile's own refusals carry it
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	data, err := readAnswer(resp, g.o.MaxResponseBytes)
	_ = resp.Body.Close()
	if err == nil && int64(len(data)) > g.o.MaxResponseBytes {
		err = errResponseTooLarge
	}
	if err != nil {
		if req := resp.Request; req != nil && !safeMethod(req.Method) {
			// The venue started answering a write: it received it and
			// may have acted on it. The bot must check, not re-send.
			return &upstream.UnknownOutcomeError{Method: req.Method, Host: req.URL.Host, Err: err}
		}
		return err
	}
	if ao != nil {
		ao.ObserveAnswer(resp, data, g.now())
	}
	data = scrub.body(data, resp.Header.Get("Content-Type"))
	if st != nil && st.deferUnknown {
		st.mu.Lock()
		st.answer = data
		st.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	resp.ContentLength = int64(len(data))
	resp.Header.Set("Content-Length", strconv.Itoa(len(data)))
	resp.Header.Del("Transfer-Encoding")
	return nil
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	id := ""
	if st != nil {
		st.mu.Lock()
		st.err = err
		st.mu.Unlock()
		id = st.id
	}
	if st != nil && st.deferUnknown && isUnknown(err) {
		// The handler looks the order up before answering.
		st.mu.Lock()
		st.unknown = true
		st.mu.Unlock()
		g.log.Warn("gateway: order outcome unknown", "request_id", id, "err", err)
		return
	}
	pe := upstreamError(err)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		pe = publicError{499, "client_closed", "client closed the request"}
	}
	g.log.Warn("gateway: upstream failed", "request_id", id, "err", err)
	writeError(w, pe, "", id)
}

// statusWriter records the status written to the bot. It also keeps the
// proxy's headers apart until the final status is written: the reverse
// proxy relays 1xx informational answers (103 Early Hints) straight from
// the venue, unscrubbed, and clears the whole header map after each one
// (losing Keystile-Request-Id). statusWriter drops 1xx answers and copies
// the proxy's headers into the real ones only with the final status.
type statusWriter struct {
	http.ResponseWriter
	code int
	hdr  http.Header
}

func (w *statusWriter) Header() http.Header {
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		return
	}
	if w.code != 0 {
		return
	}
	w.code = code
	dst := w.ResponseWriter.Header()
	for k, v := range w.hdr {
		if k != HeaderRequestID { // ours, set before the proxy ran
			dst[k] = v
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b) // #nosec G705 -- the proxy relays the venue's (scrubbed) answer
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServerOptions are the listener-side limits of Server.
type ServerOptions struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
}

// Server wraps the gateway in an http.Server with timeouts and limits.
func (g *Gateway) Server(o ServerOptions) *http.Server {
	def := func(d, v time.Duration) time.Duration {
		if d <= 0 {
			return v
		}
		return d
	}
	mhb := o.MaxHeaderBytes
	if mhb <= 0 {
		mhb = 64 << 10
	}
	return &http.Server{
		Handler:           g,
		ReadHeaderTimeout: def(o.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       def(o.ReadTimeout, 30*time.Second),
		WriteTimeout:      def(o.WriteTimeout, 60*time.Second),
		IdleTimeout:       def(o.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    mhb,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext:       func(ctx context.Context, _ net.Conn) context.Context { return ctx },
	}
}

// readAnswer reads a response body of at most limit bytes (+1 to detect
// more), sized from Content-Length when the venue sent one.
func readAnswer(resp *http.Response, limit int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n, n+1)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, err
		}
		// A body longer than its Content-Length is a protocol error the
		// transport reports; read one more byte to be sure.
		var one [1]byte
		if m, _ := resp.Body.Read(one[:]); m > 0 {
			return append(buf, one[0]), nil
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit+1))
}

// bufferPool recycles the proxy's copy buffers (httputil.BufferPool):
// without it ReverseProxy allocates 32 KiB per response.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

// Get implements httputil.BufferPool.
func (b *bufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

// Put implements httputil.BufferPool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

var _ httputil.BufferPool = (*bufferPool)(nil)
