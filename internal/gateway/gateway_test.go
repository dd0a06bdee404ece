package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

// foreignToken mints a well-formed token in another, unrelated service:
// valid format and checksum, but never issued by the gateway's service.
func foreignToken(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "other.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	svc, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatalf("token.New: %v", err)
	}
	raw, _, err := svc.Create(ctx, token.CreateRequest{Name: "elsewhere", Venues: []string{"v"}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return string(raw.Reveal())
}

// badChecksum changes the last checksum character of tok.
func badChecksum(tok string) string {
	last := tok[len(tok)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return tok[:len(tok)-1] + string(repl)
}

func TestTokenRefusals(t *testing.T) {
	h := newHarness(t, config{})
	ctx := context.Background()
	good, _ := h.mint(token.CreateRequest{})
	expired, _ := h.mint(token.CreateRequest{TTL: time.Minute})
	revoked, revokedTok := h.mint(token.CreateRequest{})
	frozen, frozenTok := h.mint(token.CreateRequest{})
	otherVenue, _ := h.mint(token.CreateRequest{Venues: []string{"w"}})
	cidr, _ := h.mint(token.CreateRequest{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	testTok, _ := h.mint(token.CreateRequest{Test: true})
	liveOnT, _ := h.mint(token.CreateRequest{Venues: []string{"t"}})
	if err := h.tokens.Revoke(ctx, revokedTok.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.tokens.Freeze(ctx, frozenTok.ID); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(2 * time.Minute)

	tests := []struct {
		name   string
		path   string
		hdr    http.Header
		status int
		rule   string
	}{
		{"missing", "/v/api/ticker", nil, 401, "token.missing"},
		{"basic auth is not a token", "/v/api/ticker", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, "token.missing"},
		{"empty bearer", "/v/api/ticker", http.Header{"Authorization": {"Bearer "}}, 401, "token.missing"},
		{"garbage", "/v/api/ticker", http.Header{"Authorization": {"Bearer hello"}}, 401, "token.malformed"},
		{"wrong checksum", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + badChecksum(good)}}, 401, "token.malformed"},
		{"wrong checksum in Keystile-Token", "/v/api/ticker", http.Header{gateway.HeaderToken: {badChecksum(good)}}, 401, "token.malformed"},
		{"unknown", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + foreignToken(t)}}, 401, "token.unknown"},
		{"expired", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + expired}}, 401, "token.expired"},
		{"revoked", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + revoked}}, 401, "token.revoked"},
		{"frozen", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + frozen}}, 403, "token.frozen"},
		{"wrong venue", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + otherVenue}}, 403, "token.venue"},
		{"source outside cidr", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + cidr}}, 403, "token.source"},
		{"test token on live-only venue", "/v/api/ticker", http.Header{"Authorization": {"Bearer " + testTok}}, 403, "token.environment"},
		{"live token on test-only venue", "/t/api/ticker", http.Header{"Authorization": {"Bearer " + liveOnT}}, 403, "token.environment"},
		{"refusal before unknown venue", "/nosuch/api/ticker", http.Header{"Authorization": {"Bearer " + good}}, 403, "token.venue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.up.reset()
			r := h.do(t, http.MethodGet, tc.path, "", nil, tc.hdr)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", r.Status, tc.status, r.Body)
			}
			pe := errorOf(t, r)
			want := msgUnauthorized
			if tc.status == http.StatusForbidden {
				want = msgForbidden
			}
			if pe.Error.Message != want {
				t.Errorf("message %q, want %q", pe.Error.Message, want)
			}
			if pe.Error.Rule != tc.rule {
				t.Errorf("public rule %q, want %q", pe.Error.Rule, tc.rule)
			}
			if tc.status == http.StatusUnauthorized && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			for _, tok := range []string{good, expired, revoked, frozen, otherVenue, cidr, testTok, liveOnT} {
				if bytes.Contains(r.Body, []byte(tok)) {
					t.Error("answer echoes a token")
				}
			}
			if n := h.up.count(); n != 0 {
				t.Errorf("upstream received %d requests", n)
			}
			e := h.event(t, r)
			checkEvent(t, e, audit.Deny, tc.rule, tc.status)
			if e.Upstream != 0 {
				t.Errorf("audit upstream status %d, want 0", e.Upstream)
			}
		})
	}

	// Positive controls: the same harness serves the good tokens.
	testOnT, _ := h.mint(token.CreateRequest{Venues: []string{"t"}, Test: true})
	t.Run("controls", func(t *testing.T) {
		for _, c := range []struct{ tok, path, prefix string }{
			{good, "/v/api/ticker", prefixV},
			{testOnT, "/t/api/ticker", prefixT},
		} {
			h.up.reset()
			r := h.do(t, http.MethodGet, c.path, c.tok, nil, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("%s: status %d body %s", c.path, r.Status, r.Body)
			}
			reqs := h.up.requests()
			if len(reqs) != 1 || reqs[0].RequestURI != c.prefix+"/api/ticker" {
				t.Fatalf("upstream saw %+v", reqs)
			}
			checkEvent(t, h.event(t, r), audit.Allow, "", http.StatusOK)
		}
	})
}

func TestRevokeFreezeTakeEffectOnNextRequest(t *testing.T) {
	h := newHarness(t, config{})
	ctx := context.Background()
	tok, rec := h.mint(token.CreateRequest{})
	steps := []struct {
		name   string
		action func() error
		status int
		rule   string
	}{
		{"allowed", nil, 200, ""},
		{"frozen", func() error { return h.tokens.Freeze(ctx, rec.ID) }, 403, "token.frozen"},
		{"unfrozen", func() error { return h.tokens.Unfreeze(ctx, rec.ID) }, 200, ""},
		{"revoked", func() error { return h.tokens.Revoke(ctx, rec.ID) }, 401, "token.revoked"},
		{"still revoked", nil, 401, "token.revoked"},
	}
	for _, s := range steps {
		if s.action != nil {
			if err := s.action(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		before := h.up.count()
		r := h.do(t, http.MethodGet, "/v/api/ticker", tok, nil, nil)
		if r.Status != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, r.Status, s.status)
		}
		e := h.event(t, r)
		if s.status == 200 {
			checkEvent(t, e, audit.Allow, "", 200)
			if h.up.count() != before+1 {
				t.Errorf("%s: not forwarded", s.name)
			}
		} else {
			checkEvent(t, e, audit.Deny, s.rule, s.status)
			if h.up.count() != before {
				t.Errorf("%s: forwarded", s.name)
			}
		}
		if e.TokenID != string(rec.ID) {
			t.Errorf("%s: audit token id %q, want %q", s.name, e.TokenID, rec.ID)
		}
	}
}

func TestRouting(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{Venues: []string{"v", "nosuch"}})
	readOnly, _ := h.mint(token.CreateRequest{Scopes: []string{"market.read"}})
	star, _ := h.mint(token.CreateRequest{Scopes: []string{"*"}})
	withdraw, _ := h.mint(token.CreateRequest{Scopes: []string{"wallet.withdraw"}})
	auth := func(s string) http.Header { return http.Header{"Authorization": {"Bearer " + s}} }

	tests := []struct {
		name     string
		method   string
		uri      string // sent verbatim
		hdr      http.Header
		status   int
		code     string
		rule     string
		decision string
	}{
		{"unknown venue after auth", "GET", "/nosuch/api/ticker", auth(tok), 404, "unknown_venue", "route.unknown_venue", audit.Deny},
		{"encoded slash climbing", "GET", "/v/..%2fother/x", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"encoded slash upper", "GET", "/v/a%2Fb", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"dot dot segment", "GET", "/v/a/../b", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"dot segment", "GET", "/v/./echo/x", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"encoded dot dot", "GET", "/v/%2e%2e/x", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"encoded dot dot upper", "GET", "/v/echo/%2E%2E/%2E%2E/w/x", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"encoded backslash", "GET", "/v/a%5cb", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"raw backslash", "GET", `/v/a\..\b`, auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"encoded nul", "GET", "/v/echo/a%00b", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"empty venue", "GET", "//api/ticker", auth(tok), 400, "bad_request", "request.path", audit.Deny},
		{"method not allowed", "TRACE", "/v/echo/x", auth(tok), 405, "method_not_allowed", "request.method", audit.Deny},
		{"unmapped route", "GET", "/v/api/secret-admin", auth(tok), 403, "denied", "venue.unmapped_route", audit.Deny},
		{"unmapped method", "PUT", "/v/api/ticker", auth(tok), 403, "denied", "venue.unmapped_route", audit.Deny},
		{"scope denial", "POST", "/v/api/order", auth(readOnly), 403, "denied", "token.scope", audit.Deny},
		{"default scopes exclude withdraw", "POST", "/v/api/withdraw", auth(tok), 403, "denied", "token.scope", audit.Deny},
		{"star does not grant withdraw", "POST", "/v/api/withdraw", auth(star), 403, "denied", "token.scope", audit.Deny},
		{"star grants order.place", "POST", "/v/api/order", auth(star), 200, "", "", audit.Allow},
		{"exact scope grants withdraw", "POST", "/v/api/withdraw", auth(withdraw), 200, "", "", audit.Allow},
		{"order cancel with id", "DELETE", "/v/api/order/123", auth(tok), 200, "", "", audit.Allow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.up.reset()
			hdr := tc.hdr.Clone()
			hdr.Set("Content-Length", "0")
			r := h.raw(t, tc.method, tc.uri, hdr)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", r.Status, tc.status, r.Body)
			}
			e := h.event(t, r)
			checkEvent(t, e, tc.decision, tc.rule, tc.status)
			if tc.decision == audit.Allow {
				if n := h.up.count(); n != 1 {
					t.Errorf("upstream received %d requests, want 1", n)
				}
				return
			}
			pe := errorOf(t, r)
			if pe.Error.Code != tc.code || pe.Error.Rule != tc.rule {
				t.Errorf("code %q rule %q, want %q %q", pe.Error.Code, pe.Error.Rule, tc.code, tc.rule)
			}
			if n := h.up.count(); n != 0 {
				t.Errorf("upstream received %d requests", n)
			}
		})
	}
}

func TestForwarding(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{})
	const (
		path  = "/echo/a%20b/c%3Fd/%41%7e/%E2%82%AC/x+y"
		query = "x=1&y=%2F%20+&z=&q=a%3Db&q=2&%C3%A9=%e2%82%ac"
	)
	body := []byte("{\"price\":\"1.5\"}\x00\xff\r\n")
	sum := sha256.Sum256(body)

	tests := []struct {
		name string
		hdr  http.Header
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + tok}}},
		{"keystile-token", http.Header{gateway.HeaderToken: {tok}, "Authorization": {"Basic Ym90OnBhc3N3b3Jk"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.up.reset()
			hdr := tc.hdr.Clone()
			for k, v := range map[string]string{
				"Keystile-Debug":         "1",
				"Keystile-Request-Id":    "forged-id",
				"Cookie":                 "session=bot",
				"X-Forwarded-For":        "6.6.6.6",
				"X-Forwarded-Host":       "evil.example",
				"X-Forwarded-Proto":      "http",
				"X-Real-Ip":              "6.6.6.6",
				"Forwarded":              "for=6.6.6.6",
				"Proxy-Authorization":    "Basic eDp5",
				"X-Http-Method-Override": "DELETE",
				"X-Http-Method":          "DELETE",
				"X-Method-Override":      "DELETE",
				hdrKey:                   "bot-supplied-key",
				hdrSign:                  "bot-supplied-signature",
				"X-Custom":               "kept",
				"Content-Type":           "application/json",
			} {
				hdr.Set(k, v)
			}
			r := h.do(t, http.MethodPost, "/v"+path+"?"+query, "", bytes.NewReader(body), hdr)
			if r.Status != http.StatusOK || string(r.Body) != "ok" {
				t.Fatalf("status %d body %q", r.Status, r.Body)
			}
			if id := r.Header.Get(gateway.HeaderRequestID); id == "" || id == "forged-id" {
				t.Errorf("request id %q", id)
			}
			reqs := h.up.requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream received %d requests", len(reqs))
			}
			got := reqs[0]
			if want := prefixV + path + "?" + query; got.RequestURI != want {
				t.Errorf("upstream request URI\n got %s\nwant %s", got.RequestURI, want)
			}
			if got.Method != http.MethodPost {
				t.Errorf("method %s", got.Method)
			}
			if !bytes.Equal(got.Body, body) {
				t.Errorf("body %q, want %q", got.Body, body)
			}
			if v := got.Header.Values(hdrKey); len(v) != 1 || v[0] != canary {
				t.Errorf("venue key header %q", v)
			}
			if v := got.Header.Values(hdrSign); len(v) != 1 || v[0] != hex.EncodeToString(sum[:]) {
				t.Errorf("venue signature header %q (the venue must sign the exact bytes)", v)
			}
			if got.Header.Get("X-Custom") != "kept" || got.Header.Get("Content-Type") != "application/json" {
				t.Errorf("ordinary headers lost: %v", got.Header)
			}
			if cl := got.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %s", cl)
			}
			for k := range got.Header {
				if strings.HasPrefix(k, "Keystile-") {
					t.Errorf("upstream received %s", k)
				}
			}
			for _, k := range []string{"Authorization", gateway.HeaderToken, "Cookie", "X-Forwarded-For", "X-Forwarded-Host",
				"X-Forwarded-Proto", "X-Real-Ip", "Forwarded", "Proxy-Authorization", "X-Http-Method-Override",
				"X-Http-Method", "X-Method-Override"} {
				if v, ok := got.Header[k]; ok {
					t.Errorf("upstream received %s: %q", k, v)
				}
			}
			for k, vs := range got.Header {
				for _, v := range vs {
					if strings.Contains(v, tok) || strings.Contains(v, "bot-supplied") {
						t.Errorf("upstream header %s carries a bot value %q", k, v)
					}
				}
			}
			e := h.event(t, r)
			checkEvent(t, e, audit.Allow, "", 200)
			if e.Upstream != 200 || e.Venue != "v" || e.Path != path || e.Operation != "market.read" || e.Method != "POST" {
				t.Errorf("audit event %+v", e)
			}
			if strings.Contains(e.Path, "?") {
				t.Errorf("audit path holds the query: %q", e.Path)
			}
		})
	}
}

// chunked hides a reader's length so the client sends it chunked.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestBodyLimit(t *testing.T) {
	const limit = 1024
	h := newHarness(t, config{maxBody: limit})
	tok, _ := h.mint(token.CreateRequest{})
	tests := []struct {
		name   string
		size   int
		chunk  bool
		status int
	}{
		{"content-length at limit", limit, false, 200},
		{"content-length over limit", limit + 1, false, 413},
		{"content-length far over limit", 64 * limit, false, 413},
		{"chunked at limit", limit, true, 200},
		{"chunked over limit", limit + 1, true, 413},
		{"chunked far over limit", 64 * limit, true, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.up.reset()
			body := bytes.Repeat([]byte("a"), tc.size)
			var rd io.Reader = bytes.NewReader(body)
			if tc.chunk {
				rd = chunked{rd}
			}
			r := h.do(t, http.MethodPost, "/v/api/order", tok, rd, nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d", r.Status, tc.status)
			}
			e := h.event(t, r)
			if tc.status == 200 {
				checkEvent(t, e, audit.Allow, "", 200)
				reqs := h.up.requests()
				if len(reqs) != 1 || !bytes.Equal(reqs[0].Body, body) {
					t.Fatalf("upstream did not get the body intact")
				}
				return
			}
			pe := errorOf(t, r)
			if pe.Error.Code != "too_large" {
				t.Errorf("code %q", pe.Error.Code)
			}
			checkEvent(t, e, audit.Deny, "request.body_size", 413)
			if n := h.up.count(); n != 0 {
				t.Errorf("upstream received %d requests", n)
			}
		})
	}
}

func TestScrubbing(t *testing.T) {
	const other = "OTHER-SECRET-9d8c7b6a5f"
	echo := func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(hdrKey)
		w.Header().Set("X-Echo", "key="+key)
		w.Header().Add("Set-Cookie", "session=abcdef0123456789; Path=/")
		w.Header().Add("Set-Cookie", "k="+key)
		switch r.URL.Query().Get("mode") {
		case "plain":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "your key is "+key+" and again "+key) // #nosec G705 -- deliberate echo, to test scrubbing
		case "json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"echo":{"api_key":%q,"n":1},"list":[%q]}`, key, key) // #nosec G705 -- deliberate echo, to test scrubbing
		case "chunked":
			_, _ = io.WriteString(w, "part one "+key[:10]) // #nosec G705 -- deliberate echo, to test scrubbing
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, key[10:]+" part two") // #nosec G705 -- deliberate echo, to test scrubbing
		case "other":
			w.Header().Set("X-Other", other)
			_, _ = io.WriteString(w, "registered: "+other)
		}
	}
	tests := []struct {
		name     string
		cfg      config
		mode     string
		wantBody string
		wantHdr  map[string]string
	}{
		{"plain body and header", config{}, "plain", "your key is REDACTED and again REDACTED", map[string]string{"X-Echo": "key=REDACTED"}},
		{"json body", config{}, "json", `{"echo":{"api_key":"REDACTED","n":1},"list":["REDACTED"]}`, nil},
		{"chunked answer split across writes", config{}, "chunked", "part one REDACTED part two", nil},
		{"registered secret never sent", config{extra: []secret.Value{secret.FromString(other)}}, "other", "registered: REDACTED", map[string]string{"X-Other": "REDACTED"}},
		{"no scrubber: sent headers still scrubbed", config{noScrub: true}, "plain", "your key is REDACTED and again REDACTED", map[string]string{"X-Echo": "key=REDACTED"}},
		{"no scrubber: json", config{noScrub: true}, "json", `{"echo":{"api_key":"REDACTED","n":1},"list":["REDACTED"]}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.up.handle(echo)
			tok, _ := h.mint(token.CreateRequest{})
			r := h.do(t, http.MethodGet, "/v/echo/x?mode="+tc.mode, tok, nil, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d", r.Status)
			}
			noCanary(t, r)
			if bytes.Contains(r.Body, []byte(other)) || strings.Contains(r.Header.Get("X-Other"), other) {
				t.Error("registered secret leaked")
			}
			if string(r.Body) != tc.wantBody {
				t.Errorf("body %q, want %q", r.Body, tc.wantBody)
			}
			for k, v := range tc.wantHdr {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s %q, want %q", k, got, v)
				}
			}
			if v := r.Header.Values("Set-Cookie"); len(v) != 0 {
				t.Errorf("Set-Cookie reached the bot: %q", v)
			}
			if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(r.Body)) {
				t.Errorf("Content-Length %q, body is %d bytes", cl, len(r.Body))
			}
			checkEvent(t, h.event(t, r), audit.Allow, "", 200)
		})
	}
}

// resetAfterRead reads the request and then resets the connection without
// answering.
func resetAfterRead(counter *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		counter.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if tc, ok := netConn(conn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	}
}

// netConn finds the TCP connection under a (TLS) connection.
func netConn(c net.Conn) (*net.TCPConn, bool) {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
}

func TestUpstreamErrors(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		// Never answer: returning normally would send "200 OK" with an
		// empty body, which a loaded machine can deliver before keystile's
		// deadline fires, and which is then rightly relayed.
		panic(http.ErrAbortHandler)
	}
	tests := []struct {
		name      string
		cfg       config
		setup     func(h *harness, counter *atomic.Int64)
		method    string
		path      string
		status    int
		code      string
		decision  string
		upstream  int   // audit upstream status
		attempts  int64 // upstream handler calls, -1: don't check
		wantBody  string
		forwarded int // requests recorded upstream, -1: don't check
	}{
		{
			name:   "upstream down",
			cfg:    config{attempts: 2},
			setup:  func(h *harness, _ *atomic.Int64) { h.up.srv.Close() },
			method: "GET", path: "/v/api/ticker", status: 502, code: "upstream_error", decision: audit.Error, attempts: -1, forwarded: 0,
		},
		{
			name:   "get hangs past total timeout",
			cfg:    config{total: 150 * time.Millisecond, attempts: 1},
			setup:  func(h *harness, c *atomic.Int64) { h.up.handle(hang) },
			method: "GET", path: "/v/api/ticker", status: 504, code: "upstream_timeout", decision: audit.Error, attempts: -1, forwarded: 1,
		},
		{
			name:   "post hangs past total timeout",
			cfg:    config{total: 150 * time.Millisecond},
			setup:  func(h *harness, c *atomic.Int64) { h.up.handle(hang) },
			method: "POST", path: "/v/api/order", status: 504, code: "outcome_unknown", decision: audit.Error, attempts: -1, forwarded: 1,
		},
		{
			name:   "post reset after read",
			cfg:    config{},
			setup:  func(h *harness, c *atomic.Int64) { h.up.handle(resetAfterRead(c)) },
			method: "POST", path: "/v/api/order", status: 504, code: "outcome_unknown", decision: audit.Error, attempts: 1, forwarded: 1,
		},
		{
			name:   "get reset is retried then reported",
			cfg:    config{attempts: 2},
			setup:  func(h *harness, c *atomic.Int64) { h.up.handle(resetAfterRead(c)) },
			method: "GET", path: "/v/api/ticker", status: 502, code: "upstream_error", decision: audit.Error, attempts: 2, forwarded: 2,
		},
		{
			name: "get 503 then 200 is retried",
			cfg:  config{},
			setup: func(h *harness, c *atomic.Int64) {
				h.up.handle(func(w http.ResponseWriter, _ *http.Request) {
					if c.Add(1) == 1 {
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					_, _ = io.WriteString(w, "second time lucky")
				})
			},
			method: "GET", path: "/v/api/ticker", status: 200, decision: audit.Allow, upstream: 200, attempts: 2, wantBody: "second time lucky", forwarded: 2,
		},
		{
			name: "post 503 is not retried",
			cfg:  config{},
			setup: func(h *harness, c *atomic.Int64) {
				h.up.handle(func(w http.ResponseWriter, _ *http.Request) {
					c.Add(1)
					w.WriteHeader(http.StatusServiceUnavailable)
				})
			},
			method: "POST", path: "/v/api/order", status: 503, decision: audit.Allow, upstream: 503, attempts: 1, forwarded: 1,
		},
		{
			name: "answer over the response limit",
			cfg:  config{maxResp: 1024},
			setup: func(h *harness, c *atomic.Int64) {
				h.up.handle(func(w http.ResponseWriter, r *http.Request) {
					c.Add(1)
					_, _ = w.Write(bytes.Repeat([]byte("x"), 1025))
				})
			},
			method: "GET", path: "/v/api/ticker", status: 502, code: "upstream_error", decision: audit.Error, upstream: 200, attempts: 1, forwarded: 1,
		},
		{
			name: "answer in an encoding keystile cannot scrub",
			cfg:  config{},
			setup: func(h *harness, c *atomic.Int64) {
				h.up.handle(func(w http.ResponseWriter, r *http.Request) {
					c.Add(1)
					w.Header().Set("Content-Encoding", "br")
					_, _ = io.WriteString(w, "key="+r.Header.Get(hdrKey)) // #nosec G705 -- deliberate echo, to test scrubbing
				})
			},
			method: "GET", path: "/v/api/ticker", status: 502, code: "upstream_error", decision: audit.Error, upstream: 200, attempts: 1, forwarded: 1,
		},
		{
			name:   "venue credential fails",
			cfg:    config{venueFail: fmt.Errorf("vault: open credential %q: decrypt failed near %s", canary, canaryFailure)},
			method: "GET", path: "/v/api/ticker", status: 503, code: "credential_unavailable", decision: audit.Error, attempts: 0, forwarded: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			var counter atomic.Int64
			if tc.setup != nil {
				tc.setup(h, &counter)
			}
			tok, _ := h.mint(token.CreateRequest{})
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(`{"symbol":"BTCUSD","qty":"1"}`)
			}
			start := time.Now()
			r := h.do(t, tc.method, tc.path, tok, body, nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", r.Status, tc.status, r.Body)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			noCanary(t, r)
			if tc.code != "" {
				pe := errorOf(t, r)
				if pe.Error.Code != tc.code {
					t.Errorf("code %q, want %q", pe.Error.Code, tc.code)
				}
				if strings.Contains(string(r.Body), "vault") || strings.Contains(string(r.Body), "dial") {
					t.Errorf("internal detail reached the bot: %s", r.Body)
				}
			}
			if tc.wantBody != "" && string(r.Body) != tc.wantBody {
				t.Errorf("body %q, want %q", r.Body, tc.wantBody)
			}
			if tc.attempts >= 0 && counter.Load() != tc.attempts {
				t.Errorf("upstream handler ran %d times, want %d", counter.Load(), tc.attempts)
			}
			if tc.forwarded >= 0 && h.up.count() != tc.forwarded {
				t.Errorf("upstream recorded %d requests, want %d", h.up.count(), tc.forwarded)
			}
			e := h.event(t, r)
			checkEvent(t, e, tc.decision, "", tc.status)
			if e.Upstream != tc.upstream {
				t.Errorf("audit upstream status %d, want %d", e.Upstream, tc.upstream)
			}
			if tc.decision == audit.Error && e.Error == "" {
				t.Error("audit event of a failure has no error detail")
			}
			if strings.Contains(e.Error, canary) {
				t.Errorf("audit error detail keeps the registered credential: %q", e.Error)
			}
		})
	}
}

func TestCredentialFailureNotLogged(t *testing.T) {
	// The venue is not called at all for refused requests.
	h := newHarness(t, config{venueFail: errors.New("must not be called")})
	tok, _ := h.mint(token.CreateRequest{Scopes: []string{"market.read"}})
	r := h.do(t, http.MethodPost, "/v/api/order", tok, strings.NewReader("{}"), nil)
	if r.Status != http.StatusForbidden {
		t.Fatalf("status %d", r.Status)
	}
	if n := h.venueV.calls.Load(); n != 0 {
		t.Errorf("Authenticate called %d times for a refused request", n)
	}
}

func TestHealth(t *testing.T) {
	notReady := fmt.Errorf("store: ping %s: connection refused", canaryFailure)
	// health is called after ready: it may report what ready found.
	var pinged atomic.Bool
	ping := func(err error) func() error { return func() error { pinged.Store(err == nil); return err } }
	health := func() any {
		return map[string]string{"backend": "postgres", "postgres": map[bool]string{true: "reachable", false: "unreachable"}[pinged.Load()]}
	}
	tests := []struct {
		name   string
		ready  func() error
		health func() any
		path   string
		status int
		body   string
	}{
		{"healthz", nil, nil, "/-/healthz", 200, `{"status":"ok"}` + "\n"},
		{"healthz while not ready", func() error { return notReady }, nil, "/-/healthz", 200, `{"status":"ok"}` + "\n"},
		{"readyz default", nil, nil, "/-/readyz", 200, `{"status":"ready"}` + "\n"},
		{"readyz ready", func() error { return nil }, nil, "/-/readyz", 200, `{"status":"ready"}` + "\n"},
		{"readyz not ready", func() error { return notReady }, nil, "/-/readyz", 503, ""},
		{"readyz ready with store health", ping(nil), health, "/-/readyz", 200,
			`{"status":"ready","store":{"backend":"postgres","postgres":"reachable"}}` + "\n"},
		{"readyz not ready with store health", ping(notReady), health, "/-/readyz", 503, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config{ready: tc.ready, health: tc.health})
			r := h.do(t, http.MethodGet, tc.path, "", nil, nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d", r.Status, tc.status)
			}
			noCanary(t, r)
			if tc.body != "" && string(r.Body) != tc.body {
				t.Errorf("body %q, want %q", r.Body, tc.body)
			}
			if tc.status == 503 {
				if pe := errorOf(t, r); pe.Error.Code != "not_ready" {
					t.Errorf("code %q", pe.Error.Code)
				}
			}
			if n := h.up.count(); n != 0 {
				t.Errorf("health check reached the upstream")
			}
		})
	}
}

// TestAuditOneEventPerRequest sends a mix of allowed, refused and failed
// requests concurrently and checks that each produced exactly one event.
func TestAuditOneEventPerRequest(t *testing.T) {
	h := newHarness(t, config{})
	h.up.handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tok, _ := h.mint(token.CreateRequest{})
	type kind struct {
		method, path, tok string
		status            int
		decision          string
	}
	kinds := []kind{
		{"GET", "/v/api/ticker", tok, 200, audit.Allow},
		{"GET", "/v/echo/fail", tok, 500, audit.Allow},
		{"GET", "/v/api/ticker", "", 401, audit.Deny},
		{"GET", "/v/api/nope", tok, 403, audit.Deny},
		{"POST", "/v/api/withdraw", tok, 403, audit.Deny},
	}
	const rounds = 8
	results := make(chan struct {
		r response
		k kind
	}, rounds*len(kinds))
	errs := make(chan error, rounds*len(kinds))
	for i := 0; i < rounds; i++ {
		for _, k := range kinds {
			go func() {
				req, err := http.NewRequest(k.method, h.front.URL+k.path, nil)
				if err != nil {
					errs <- err
					return
				}
				if k.tok != "" {
					req.Header.Set("Authorization", "Bearer "+k.tok)
				}
				resp, err := h.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				results <- struct {
					r response
					k kind
				}{response{resp.StatusCode, resp.Header, b}, k}
			}()
		}
	}
	for i := 0; i < rounds*len(kinds); i++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		case res := <-results:
			if res.r.Status != res.k.status {
				t.Errorf("%s %s: status %d, want %d", res.k.method, res.k.path, res.r.Status, res.k.status)
			}
			e := h.event(t, res.r)
			if e.Decision != res.k.decision || e.Status != res.k.status {
				t.Errorf("%s %s: event %+v", res.k.method, res.k.path, e)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("timeout")
		}
	}
	if n := len(h.sink.all()); n != rounds*len(kinds) {
		t.Errorf("%d events for %d requests", n, rounds*len(kinds))
	}
}

func TestNewValidation(t *testing.T) {
	h := newHarness(t, config{})
	v := &testVenue{table: testTable()}
	u := mustURL(t, "https://"+h.up.host())
	ep := &gateway.Endpoint{BaseURL: u, Transport: http.DefaultTransport}
	tests := []struct {
		name string
		o    gateway.Options
	}{
		{"no tokens", gateway.Options{}},
		{"empty venue id", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "", Impl: v, Live: ep}}}},
		{"slash in venue id", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a/b", Impl: v, Live: ep}}}},
		{"percent in venue id", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a%2f", Impl: v, Live: ep}}}},
		{"nil impl", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a", Live: ep}}}},
		{"duplicate", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a", Impl: v, Live: ep}, {ID: "a", Impl: v, Live: ep}}}},
		{"no endpoint", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a", Impl: v}}}},
		{"endpoint without transport", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a", Impl: v, Test: &gateway.Endpoint{BaseURL: u}}}}},
		{"endpoint without url", gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a", Impl: v, Live: &gateway.Endpoint{Transport: http.DefaultTransport}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gateway.New(tc.o)
			if err == nil || g != nil {
				t.Fatalf("New = %v, %v; want an error", g, err)
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if g, err := gateway.New(gateway.Options{Tokens: h.tokens, Venues: []gateway.Venue{{ID: "a", Impl: v, Live: ep}}}); err != nil || g == nil {
		t.Fatalf("valid options: %v", err)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestScrubbingSideChannels covers the parts of an answer that are not its
// header block or body: trailers and 1xx informational answers.
func TestScrubbingSideChannels(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"trailer", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Leak")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Leak", "key="+r.Header.Get(hdrKey))
		}},
		{"undeclared trailer", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "body")
			w.Header().Set(http.TrailerPrefix+"X-Leak", "key="+r.Header.Get(hdrKey))
		}},
		{"venue sets our request id", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(gateway.HeaderRequestID, "forged-by-venue")
			_, _ = io.WriteString(w, "body")
		}},
		{"early hints", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css?k="+r.Header.Get(hdrKey)+">; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			_, _ = io.WriteString(w, "body")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config{})
			h.up.handle(tc.handler)
			tok, _ := h.mint(token.CreateRequest{})
			req, err := http.NewRequest(http.MethodGet, h.front.URL+"/v/echo/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			var early []http.Header
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
					early = append(early, http.Header(hdr).Clone())
					return nil
				},
			}))
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			r := response{Status: resp.StatusCode, Header: resp.Header, Body: body}
			if r.Status != 200 || string(body) != "body" {
				t.Fatalf("status %d body %q", r.Status, body)
			}
			noCanary(t, r)
			if ids := resp.Header.Values(gateway.HeaderRequestID); len(ids) != 1 || ids[0] == "forged-by-venue" {
				t.Errorf("request id header %q", ids)
			}
			noCanary(t, response{Header: resp.Trailer})
			for _, hdr := range early {
				noCanary(t, response{Header: hdr})
			}
			checkEvent(t, h.event(t, r), audit.Allow, "", 200)
		})
	}
}
