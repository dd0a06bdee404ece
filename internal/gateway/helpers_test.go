package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// canary is the venue credential the test venue injects. It must never
// reach a bot: not in a body, a header, or an error.
const canary = "CANARY-gw-7c1e4d2b9a-credential"

// canaryFailure is a credential failure text that embeds a second canary
// (a venue error that quotes a secret must not reach the bot either).
const canaryFailure = "CANARY-gw-failure-3f9a0d"

// Fixed public messages of token refusals.
const (
	msgUnauthorized = "missing or invalid keystile token"
	msgForbidden    = "this keystile token may not make this request"
)

// Headers of the test venue.
const (
	hdrKey  = "X-Test-Key"  // the API key the venue injects
	hdrSign = "X-Test-Sign" // sha256 of the exact body bytes, set by the venue
)

// testVenue is a small but real venue.Venue: an operations table, and an
// Authenticate that injects the canary credential and a body digest.
type testVenue struct {
	table venue.Table
	key   secret.Value
	fail  error // if set, Authenticate fails with it
	calls atomic.Int64
}

func (v *testVenue) Classify(r *venue.Request) (string, bool) {
	return v.table.Lookup(r.Method, r.Path)
}

func (v *testVenue) Authenticate(_ context.Context, out *http.Request, body []byte) error {
	v.calls.Add(1)
	if v.fail != nil {
		return v.fail
	}
	out.Header.Set(hdrKey, string(v.key.Reveal()))
	sum := sha256.Sum256(body)
	out.Header.Set(hdrSign, hex.EncodeToString(sum[:]))
	return nil
}

func (v *testVenue) CredentialHeaders() []string { return []string{hdrKey, hdrSign} }

var _ venue.Venue = (*testVenue)(nil)

// testTable is the operations table of every test venue.
func testTable() venue.Table {
	return venue.Table{
		{Method: http.MethodGet, Path: "/api/ticker", Op: venue.OpMarketRead},
		{Method: http.MethodGet, Path: "/api/account", Op: venue.OpAccountRead},
		{Method: http.MethodPost, Path: "/api/order", Op: venue.OpOrderPlace},
		{Method: http.MethodDelete, Path: "/api/order/{id}", Op: venue.OpOrderCancel},
		{Method: http.MethodPost, Path: "/api/withdraw", Op: venue.OpWalletWithdraw},
		{Method: "*", Path: "/echo/*", Op: venue.OpMarketRead},
	}
}

// seen is one request as the upstream received it.
type seen struct {
	Method     string
	RequestURI string
	Path       string // decoded
	Header     http.Header
	Body       []byte
}

// recorder is a real TLS upstream that records what reaches it and then
// runs the test's handler.
type recorder struct {
	srv     *httptest.Server
	quiet   atomic.Bool // if set, requests are not recorded (benchmarks)
	mu      sync.Mutex
	reqs    []seen
	handler atomic.Pointer[http.HandlerFunc]
}

func newRecorder(t testing.TB) *recorder {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !rec.quiet.Load() {
			rec.mu.Lock()
			rec.reqs = append(rec.reqs, seen{Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
			rec.mu.Unlock()
		}
		if h := rec.handler.Load(); h != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			(*h)(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rec.srv = srv
	return rec
}

func (rec *recorder) handle(h http.HandlerFunc) { rec.handler.Store(&h) }

func (rec *recorder) requests() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	rec.reqs = nil
	rec.mu.Unlock()
}

func (rec *recorder) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(rec.srv.Certificate())
	return p
}

func (rec *recorder) host() string { return rec.srv.Listener.Addr().String() }

// sink is an audit.Sink that keeps every event.
type sink struct {
	mu     sync.Mutex
	events []audit.Event
}

func (s *sink) Record(_ context.Context, e audit.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *sink) all() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Event(nil), s.events...)
}

// countSink counts events (for fuzzing and benchmarks, where a slice
// would grow without bound).
type countSink struct{ n atomic.Int64 }

func (s *countSink) Record(context.Context, audit.Event) { s.n.Add(1) }

var (
	_ audit.Sink = (*sink)(nil)
	_ audit.Sink = (*countSink)(nil)
)

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// Venue layout of the harness: "v" is live-only with upstream prefix
// /pfx-v, "w" is live-only with /pfx-w, "t" is test-only with /pfx-t.
const (
	prefixV = "/pfx-v"
	prefixW = "/pfx-w"
	prefixT = "/pfx-t"
)

// config tunes a harness.
type config struct {
	maxBody   int64
	maxResp   int64
	total     time.Duration // upstream total timeout
	attempts  int           // retry attempts (0: upstream default)
	ready     func() error
	health    func() any
	noScrub   bool // no Scrubber: only sent credential headers are scrubbed
	venueFail error
	extra     []secret.Value // more values registered with the Redactor
	events    audit.Sink     // overrides the recording sink
	upstream  *recorder      // share an upstream
	guard     gateway.Guard
}

// harness is a gateway with real parts: a token.Service on SQLite, an
// upstream.Transport to a TLS upstream, a test venue, a Redactor.
type harness struct {
	t      testing.TB
	gw     *gateway.Gateway
	front  *httptest.Server // the gateway on loopback
	client *http.Client
	tokens *token.Service
	clock  *clock
	up     *recorder
	sink   *sink
	venueV *testVenue
}

func newHarness(t testing.TB, c config) *harness {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keystile.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	clk := newClock()
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens(), Now: clk.now})
	if err != nil {
		t.Fatalf("token.New: %v", err)
	}
	up := c.upstream
	if up == nil {
		up = newRecorder(t)
	}
	tr, err := upstream.New(upstream.Options{Hosts: []string{up.host()}, RootCAs: up.pool(), Total: c.total})
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	endpoint := func(prefix string) *gateway.Endpoint {
		u, err := url.Parse("https://" + up.host() + prefix)
		if err != nil {
			t.Fatalf("parse base: %v", err)
		}
		return &gateway.Endpoint{BaseURL: u, Transport: tr}
	}
	retry := upstream.RetryPolicy{MaxAttempts: c.attempts, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	vV := &testVenue{table: testTable(), key: secret.FromString(canary), fail: c.venueFail}
	vW := &testVenue{table: testTable(), key: secret.FromString(canary)}
	vT := &testVenue{table: testTable(), key: secret.FromString(canary)}
	snk := &sink{}
	var events audit.Sink = snk
	if c.events != nil {
		events = c.events
	}
	o := gateway.Options{
		Tokens: tokens,
		Venues: []gateway.Venue{
			{ID: "v", Impl: vV, Live: endpoint(prefixV), Retry: retry},
			{ID: "w", Impl: vW, Live: endpoint(prefixW), Retry: retry},
			{ID: "t", Impl: vT, Test: endpoint(prefixT), Retry: retry},
		},
		Events:           events,
		MaxBodyBytes:     c.maxBody,
		MaxResponseBytes: c.maxResp,
		Ready:            c.ready,
		Health:           c.health,
		Now:              clk.now,
		Guard:            c.guard,
	}
	if !c.noScrub {
		red := logging.NewRedactor()
		red.Register(secret.FromString(canary))
		for _, v := range c.extra {
			red.Register(v)
		}
		o.Scrubber = red
	}
	gw, err := gateway.New(o)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	front := httptest.NewUnstartedServer(gw)
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.Start()
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	return &harness{t: t, gw: gw, front: front, client: client, tokens: tokens, clock: clk, up: up, sink: snk, venueV: vV}
}

// mint creates a token and returns its string and record.
func (h *harness) mint(req token.CreateRequest) (string, *token.Token) {
	h.t.Helper()
	if req.Name == "" {
		req.Name = "bot"
	}
	if req.Venues == nil {
		req.Venues = []string{"v"}
	}
	raw, tok, err := h.tokens.Create(context.Background(), req)
	if err != nil {
		h.t.Fatalf("token.Create: %v", err)
	}
	return string(raw.Reveal()), tok
}

// response is a bot-side answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request to the gateway. hdr values are set as given; tok, if
// non-empty, goes into Authorization: Bearer.
func (h *harness) do(t testing.TB, method, target, tok string, body io.Reader, hdr http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, h.front.URL+target, body)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, target, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// raw writes a request line and headers verbatim on a fresh connection,
// for paths an http.Client would not send as given.
func (h *harness) raw(t testing.TB, method, requestURI string, hdr http.Header) response {
	t.Helper()
	conn, err := net.Dial("tcp", h.front.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString(method + " " + requestURI + " HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n")
	for k, vs := range hdr {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// publicError is the JSON body of every refusal.
type publicError struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Rule      string `json:"rule"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// errorOf decodes an error answer and checks the request id matches the
// header. Unknown fields are refused, so nothing else leaks into it.
func errorOf(t testing.TB, r response) publicError {
	t.Helper()
	var pe publicError
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pe); err != nil {
		t.Fatalf("error body %q: %v", r.Body, err)
	}
	id := r.Header.Get(gateway.HeaderRequestID)
	if id == "" || pe.Error.RequestID != id {
		t.Fatalf("request_id %q, header %q", pe.Error.RequestID, id)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return pe
}

// event waits for the audit event of r (events are recorded before the
// handler returns, but the answer may be flushed earlier) and checks there
// is exactly one.
func (h *harness) event(t testing.TB, r response) audit.Event {
	t.Helper()
	id := r.Header.Get(gateway.HeaderRequestID)
	if id == "" {
		t.Fatalf("answer without %s", gateway.HeaderRequestID)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		var found []audit.Event
		for _, e := range h.sink.all() {
			if e.RequestID == id {
				found = append(found, e)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%d audit events for request %s, want 1: %+v", len(found), id, found)
		}
		if len(found) == 1 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for request %s", id)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkEvent checks an event's decision, rule and status.
func checkEvent(t testing.TB, e audit.Event, decision, rule string, status int) {
	t.Helper()
	if e.Decision != decision || e.Rule != rule || e.Status != status {
		t.Errorf("audit event decision=%q rule=%q status=%d, want %q %q %d", e.Decision, e.Rule, e.Status, decision, rule, status)
	}
	for _, s := range []string{canary, canaryFailure} {
		if strings.Contains(e.Path, s) || strings.Contains(e.TokenID, s) {
			t.Errorf("audit event carries a canary: %+v", e)
		}
	}
	if strings.HasPrefix(e.TokenID, "kst_") {
		t.Errorf("audit event carries a raw token: %q", e.TokenID)
	}
}

// noCanary fails if the answer holds a canary anywhere.
func noCanary(t testing.TB, r response) {
	t.Helper()
	for _, s := range []string{canary, canaryFailure} {
		if bytes.Contains(r.Body, []byte(s)) {
			t.Errorf("body leaks canary %q: %q", s, r.Body)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, s) || strings.Contains(k, s) {
					t.Errorf("header %s leaks canary: %q", k, v)
				}
			}
		}
	}
}
