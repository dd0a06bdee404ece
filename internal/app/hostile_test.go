package app_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
)

// rawAnswer is what the gateway answered on a raw connection: a response,
// or closed (the connection ended without one).
type rawAnswer struct {
	resp   *http.Response
	body   []byte
	closed bool
	// kept is set when neither an answer nor a close came in time.
	kept bool
}

// rawExchange dials the gateway, writes payload as is and reads one
// response (or the connection closing) within 10 s.
func rawExchange(t *testing.T, h *harness, payload string) rawAnswer {
	t.Helper()
	a, _ := rawExchangeNext(t, h, payload, false)
	return a
}

// rawExchangeNext is rawExchange that, if next, also reports what came
// next on the same connection within 1.5 s: another answer, a close, or
// nothing (kept).
func rawExchangeNext(t *testing.T, h *harness, payload string, next bool) (first, then rawAnswer) {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.srv.GatewayAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, payload); err != nil {
		// The server may close early (it saw enough): read what it said.
		t.Logf("write: %v", err)
	}
	br := bufio.NewReader(c)
	first = readRawFrom(br)
	if first.kept {
		t.Fatalf("no answer and no close within the deadline")
	}
	if first.closed || !next {
		return first, rawAnswer{closed: first.closed}
	}
	_ = c.SetDeadline(time.Now().Add(1500 * time.Millisecond))
	return first, readRawFrom(br)
}

// readRaw reads one response from c; a clean close gives closed.
func readRaw(t *testing.T, c net.Conn) rawAnswer {
	t.Helper()
	a := readRawFrom(bufio.NewReader(c))
	if a.kept {
		t.Fatalf("no answer and no close within the deadline")
	}
	return a
}

func readRawFrom(br *bufio.Reader) rawAnswer {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return rawAnswer{kept: true}
		}
		return rawAnswer{closed: true}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rawAnswer{resp: resp, body: b}
}

// sandboxRequests sums the requests every sandbox venue has seen.
func sandboxRequests(h *harness) map[string]int64 {
	out := map[string]int64{}
	for _, v := range sandbox.AllVenues() {
		out[v] = h.sb.Stats(v).Requests
	}
	return out
}

// wantNoVenueRequests fails if any sandbox venue saw a request since before.
func wantNoVenueRequests(t *testing.T, h *harness, before map[string]int64) {
	t.Helper()
	for v, n := range sandboxRequests(h) {
		if n != before[v] {
			t.Errorf("sandbox venue %s saw %d request(s) it must not have", v, n-before[v])
		}
	}
}

// wantProcessHealthy: /-/healthz answers on a new connection, a normal
// read through the gateway works, and the server logged no panic.
func wantProcessHealthy(t *testing.T, h *harness, tok string) {
	t.Helper()
	wantHealthy(t, h)
	gen := e2eVenues()[4]
	wantOK(t, gen.id, gen.read, h.mustCall(t, tok, gen.id, gen.read))
	if strings.Contains(h.log.String(), "panic") {
		t.Errorf("the server log mentions a panic")
	}
}

// hostileHarness starts a server with short listener timeouts so that
// slow clients are cut off quickly.
func hostileHarness(t *testing.T) *harness {
	t.Helper()
	return startHarnessWith(t, harnessOptions{}, func(_ sandbox.Info, cfg *config.Config) {
		cfg.Gateway.ReadHeaderTimeout = 500 * time.Millisecond
		cfg.Gateway.ReadTimeout = 1500 * time.Millisecond
		cfg.Gateway.MaxHeaderBytes = 16 << 10
		cfg.Gateway.MaxBodyBytes = 64 << 10
	})
}

// TestHostileRawHTTP sends malformed and ambiguous HTTP straight over TCP,
// with a valid token so that only the framing can be the reason to refuse:
// request smuggling (CL+TE, duplicate Content-Length, obfuscated
// Transfer-Encoding), header injection, oversized headers and bodies,
// invalid bytes. Each gets a clean 4xx (or the connection closed), no
// venue sees a request, and the process stays healthy. The few messages
// RFC 9112 lets a server process (Transfer-Encoding overriding
// Content-Length, obs-fold, bare LF) are processed with one unambiguous
// framing; after CL+TE the connection must be closed (RFC 9112 6.1), so a
// request smuggled behind it is never run.
func TestHostileRawHTTP(t *testing.T) {
	h := hostileHarness(t)
	tok := h.botToken(t).Token
	order := e2eVenues()[4].order.body
	req := func(lines ...string) string { return strings.Join(lines, "\r\n") }
	auth := "Authorization: Bearer " + tok
	smuggled := req("GET /stake/graphql HTTP/1.1", "Host: x", auth, "", "")

	const (
		anyRefusal = 0  // any 4xx, or the connection closed
		processed  = -1 // processed with one framing (any status < 500)
	)
	for _, tc := range []struct {
		name    string
		payload string
		status  int
		// also are other acceptable statuses (net/http's 501 for an
		// unknown transfer coding and 505 for an unknown version, both
		// what RFC 9112 asks for).
		also []int
		// mustClose: after the answer the connection must close (the
		// smuggled request behind it must not run).
		mustClose bool
	}{
		{name: "CL and TE chunked with a smuggled request", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Content-Type: application/json", "Content-Length: 5", "Transfer-Encoding: chunked", "",
			fmt.Sprintf("%x", len(order)), order, "0", "", smuggled), status: processed, mustClose: true},
		{name: "TE chunked and CL, reversed", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding: chunked", "Content-Length: 200", "", "0", "", smuggled), status: processed, mustClose: true},
		{name: "two different Content-Lengths", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Content-Length: 5", "Content-Length: "+strconv.Itoa(len(order)), "", order), status: http.StatusBadRequest},
		{name: "Content-Length list", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Content-Length: 5, "+strconv.Itoa(len(order)), "", order), status: http.StatusBadRequest},
		{name: "negative Content-Length", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Content-Length: -1", "", order), status: http.StatusBadRequest},
		{name: "Content-Length with a plus sign", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Content-Length: +"+strconv.Itoa(len(order)), "", order), status: http.StatusBadRequest},
		{name: "obfuscated Transfer-Encoding", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding: xchunked", "", "0", "", ""), status: anyRefusal, also: []int{http.StatusNotImplemented}},
		{name: "Transfer-Encoding list", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding: gzip, chunked", "", "0", "", ""), status: anyRefusal, also: []int{http.StatusNotImplemented}},
		{name: "Transfer-Encoding with obs-fold", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding:", " chunked", "", "0", "", ""), status: processed},
		{name: "bad chunk size", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding: chunked", "", "zz", order, "0", "", ""), status: http.StatusBadRequest},
		{name: "chunk size overflow", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding: chunked", "", "ffffffffffffffffff", order, "0", "", ""), status: http.StatusBadRequest},
		{name: "bare LF ends a header line", payload: "GET /generic/api/v1/balance HTTP/1.1\r\nHost: x\r\n" + auth + "\r\nX-A: a\nX-B: 1\r\n\r\n", status: processed},
		{name: "bare CR in a header value", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: x", auth, "X-A: a\rX-Injected: 1", "", ""), status: http.StatusBadRequest},
		{name: "NUL in a header value", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: x", auth, "X-A: a\x00b", "", ""), status: http.StatusBadRequest},
		{name: "space in a header name", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: x", auth, "X A: b", "", ""), status: http.StatusBadRequest},
		{name: "space before the colon", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: x", "Authorization : Bearer "+tok, "", ""), status: http.StatusBadRequest},
		{name: "no Host header", payload: req("GET /generic/api/v1/balance HTTP/1.1", auth, "", ""), status: http.StatusBadRequest},
		{name: "two Host headers", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: a", "Host: b", auth, "", ""), status: http.StatusBadRequest},
		{name: "oversized header", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: x", auth, "X-Big: "+strings.Repeat("a", 64<<10), "", ""), status: http.StatusRequestHeaderFieldsTooLarge},
		{name: "many headers", payload: req("GET /generic/api/v1/balance HTTP/1.1", "Host: x", auth, strings.Repeat("X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 2000), ""), status: http.StatusRequestHeaderFieldsTooLarge},
		{name: "oversized body (Content-Length)", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Content-Length: "+strconv.Itoa(64<<10+1), "", strings.Repeat("a", 64<<10+1)), status: http.StatusRequestEntityTooLarge},
		{name: "oversized body (chunked)", payload: req("POST /generic/api/v1/orders HTTP/1.1", "Host: x", auth,
			"Transfer-Encoding: chunked", "", fmt.Sprintf("%x", 64<<10+1), strings.Repeat("a", 64<<10+1), "0", "", ""), status: http.StatusRequestEntityTooLarge},
		{name: "HTTP/0.9 request line", payload: "GET /generic/api/v1/balance\r\n\r\n", status: anyRefusal},
		{name: "unknown HTTP version", payload: req("GET /generic/api/v1/balance HTTP/7.1", "Host: x", auth, "", ""), status: anyRefusal, also: []int{http.StatusHTTPVersionNotSupported}},
		{name: "raw invalid UTF-8 in the path", payload: req("GET /generic/api/v1/bal\xff\xfeance HTTP/1.1", "Host: x", auth, "", ""), status: anyRefusal},
		{name: "control byte in the path", payload: req("GET /generic/api/v1/bal\x01ance HTTP/1.1", "Host: x", auth, "", ""), status: http.StatusBadRequest},
		{name: "CONNECT to a venue host", payload: req("CONNECT "+strings.TrimPrefix(h.info.Venues[sandbox.VenueStake].BaseURL, "https://")+" HTTP/1.1",
			"Host: x", auth, "", ""), status: anyRefusal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sandboxRequests(h)
			ans, next := rawExchangeNext(t, h, tc.payload, tc.mustClose)
			got := -1
			if !ans.closed {
				got = ans.resp.StatusCode
			}
			switch {
			case tc.status == processed:
				if ans.closed || got >= 500 {
					t.Errorf("answer %d (closed %v), want it processed with one framing", got, ans.closed)
				}
			case ans.closed:
				if tc.status != anyRefusal {
					t.Errorf("connection closed without an answer, want %d", tc.status)
				}
			case slices.Contains(tc.also, got):
			case tc.status != anyRefusal && got != tc.status:
				t.Errorf("status %d, want %d: %.200s", got, tc.status, ans.body)
			case got < 400 || got > 499:
				t.Errorf("status %d, want a 4xx: %.200s", got, ans.body)
			}
			if tc.status != processed {
				wantNoVenueRequests(t, h, before)
			} else {
				// Only the generic venue may have seen the request, once.
				after := sandboxRequests(h)
				for v, n := range after {
					if d := n - before[v]; (v == sandbox.VenueGeneric && d > 1) || (v != sandbox.VenueGeneric && d != 0) {
						t.Errorf("venue %s saw %d requests", v, d)
					}
				}
			}
			if tc.mustClose && !next.closed {
				what := "kept it open"
				if next.resp != nil {
					what = fmt.Sprintf("answered the request smuggled behind it (%d)", next.resp.StatusCode)
				}
				// Go's net/http drops Content-Length when
				// Transfer-Encoding is present and keeps the connection;
				// RFC 9112 6.1 says the server MUST close it.
				t.Fatalf("after a request with both Content-Length and Transfer-Encoding the gateway %s", what)
			}
			if !ans.closed && got >= 400 && ans.resp.Header.Get("Keystile-Request-Id") != "" {
				// The handler answered (not net/http's parser): it
				// must have audited the refusal.
				rec := auditRecord(t, h, ans.resp.Header.Get("Keystile-Request-Id"))
				if rec.Status != got || (tc.status != processed && rec.Decision != "deny") {
					t.Errorf("audit: decision %q status %d, want deny %d", rec.Decision, rec.Status, got)
				}
			}
		})
	}
	wantProcessHealthy(t, h, tok)
}

// TestHostilePaths aims paths at another venue's prefix (traversal,
// encoded slashes and backslashes, double encoding, NUL, case games) with a
// token valid for every venue: each gets a clean 4xx before anything is
// signed, no venue sees a request, and each refusal is audited.
func TestHostilePaths(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	tok := h.botToken(t).Token
	for _, tc := range []struct {
		path   string
		status int
		rule   string
	}{
		{"/generic/..%2fstake/graphql", 400, "request.path"},
		{"/generic/..%2Fstake/graphql", 400, "request.path"},
		{"/generic/%2e%2e/stake/graphql", 400, "request.path"},
		{"/generic/%2E%2E/stake/graphql", 400, "request.path"},
		{"/generic/.%2e/stake/graphql", 400, "request.path"},
		{"/generic/../stake/graphql", 400, "request.path"},
		{"/generic/./../stake/graphql", 400, "request.path"},
		{"/generic//../stake/graphql", 400, "request.path"},
		{"/generic/api/v1/../../../stake/graphql", 400, "request.path"},
		{"/generic/..%5cstake/graphql", 400, "request.path"},
		{"/generic/..\\stake/graphql", 400, "request.path"},
		{"/generic%2fstake/graphql", 400, "request.path"},
		{"/generic%2f..%2fstake/graphql", 400, "request.path"},
		{"/generic/api/v1/balance%00", 400, "request.path"},
		{"/stake%00/graphql", 400, "request.path"},
		{"/%2e%2e/stake/graphql", 400, "request.path"},
		{"/./stake/graphql", 400, "request.path"},
		{"/../stake/graphql", 400, "request.path"},
		{"//stake/graphql", 400, "request.path"},
		{"/", 400, "request.path"},
		// Double-encoded and path-parameter dot segments and bytes that
		// are not UTF-8 are refused like ".." (a server in front of the
		// venue may decode twice or drop ";params").
		{"/generic/%252e%252e%252fstake/graphql", 400, "request.path"},
		{"/generic/%2e%2e%252fstake/graphql", 400, "request.path"},
		{"/generic/..;/stake/graphql", 400, "request.path"},
		{"/generic/%c0%ae%c0%ae/stake/graphql", 400, "request.path"},
		{"/GENERIC/api/v1/balance", 403, "token.venue"},
		{"/generic/api/v1/bal%ffance", 400, "request.path"},
		// Invalid escapes: net/http's parser refuses them (rule "").
		{"/generic/api/v1/bal%zzance", 400, ""},
		{"/generic/api/v1/balance%", 400, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := sandboxRequests(h)
			payload := "GET " + tc.path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
			ans := rawExchange(t, h, payload)
			if ans.closed {
				t.Fatalf("connection closed without an answer")
			}
			if ans.resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.300s", ans.resp.StatusCode, tc.status, ans.body)
			}
			wantNoVenueRequests(t, h, before)
			resp := botResponse{status: ans.resp.StatusCode, header: ans.resp.Header, body: ans.body}
			if got := resp.errorRule(); got != tc.rule {
				t.Errorf("rule %q, want %q", got, tc.rule)
			}
			if tc.rule != "" {
				wantAudit(t, h, resp, "", "deny", tc.rule)
			}
		})
	}

	// Empty path segments: the operations table ignores leading and
	// trailing slashes, so "//api/v1/balance" is classified as the mapped
	// read while the venue receives "//api/v1/balance" verbatim. What
	// keystile authorised and what the venue routes must be the same
	// path.
	for _, p := range []string{"/generic//api/v1/balance", "/generic/api/v1/balance//", "/generic///api/v1/balance"} {
		t.Run("empty segments "+p, func(t *testing.T) {
			before := sandboxRequests(h)
			ans := rawExchange(t, h, "GET "+p+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\n\r\n")
			if ans.closed {
				t.Fatal("connection closed without an answer")
			}
			if after := sandboxRequests(h); after[sandbox.VenueGeneric] != before[sandbox.VenueGeneric] && ans.resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%s was classified as a mapped operation and forwarded verbatim (venue answered %d); "+
					"empty path segments must be refused with 400 request.path", p, ans.resp.StatusCode)
			}
			if ans.resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %.200s", ans.resp.StatusCode, ans.body)
			}
			wantNoVenueRequests(t, h, before)
			wantAudit(t, h, botResponse{status: ans.resp.StatusCode, header: ans.resp.Header, body: ans.body}, "", "deny", "request.path")
		})
	}
	wantProcessHealthy(t, h, tok)
}

// TestHostileHeaders: method override headers, Host spoofing, absolute-form
// targets, forwarding headers and bot-supplied venue credential headers.
// keystile decides on the real method and path, signs for the venue in the
// path only, and the venue never sees the bot's forged values.
func TestHostileHeaders(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	gen := e2eVenues()[4]
	// A read-only token for the generic venue only.
	ro := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{gen.id}, Scopes: []string{"account.read"}, CIDRs: []string{"127.0.0.1/32"}}).Token
	all := h.botToken(t).Token

	t.Run("method override cannot turn a read into a write", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		for _, hdr := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
			resp, err := h.callHeader(ro, gen.id, gen.read, http.Header{hdr: {"POST"}})
			if err != nil {
				t.Fatal(err)
			}
			wantOK(t, gen.id, gen.read, resp)
		}
		after := h.sb.Stats(gen.id)
		if d := delta(before, after); d.orders != 0 || d.requests != 3 || d.authFailures != 0 {
			t.Errorf("venue: %+v, want 3 plain reads", d)
		}
	})

	t.Run("method override cannot turn a write into an allowed read", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		resp, err := h.callHeader(ro, gen.id, gen.order, http.Header{"X-Http-Method-Override": {"GET"}})
		if err != nil {
			t.Fatal(err)
		}
		wantGatewayError(t, resp, http.StatusForbidden, "denied")
		wantAudit(t, h, resp, gen.id, "deny", "token.scope")
		if d := delta(before, h.sb.Stats(gen.id)); d.requests != 0 {
			t.Errorf("a refused write reached the venue")
		}
	})

	t.Run("methods outside the allowlist", func(t *testing.T) {
		for _, m := range []string{"TRACE", "PROPFIND", "get", "DEBUG", "PURGE"} {
			before := sandboxRequests(h)
			ans := rawExchange(t, h, m+" /generic/api/v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+all+"\r\n\r\n")
			if ans.closed || ans.resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s: closed %v, answer %v, want 405", m, ans.closed, ans.resp)
				continue
			}
			wantNoVenueRequests(t, h, before)
			resp := botResponse{status: ans.resp.StatusCode, header: ans.resp.Header, body: ans.body}
			wantAudit(t, h, resp, gen.id, "deny", "request.method")
		}
	})

	t.Run("Host and forwarding headers are not trusted", func(t *testing.T) {
		stake := strings.TrimPrefix(h.info.Venues[sandbox.VenueStake].BaseURL, "https://")
		before := sandboxRequests(h)
		genBefore := h.sb.Stats(gen.id)
		for _, hdr := range []http.Header{
			{"X-Forwarded-Host": {stake}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"host=" + stake}},
			{"X-Original-Url": {"/stake/graphql"}, "X-Rewrite-Url": {"/stake/graphql"}},
		} {
			resp, err := h.callHeader(all, gen.id, gen.read, hdr)
			if err != nil {
				t.Fatal(err)
			}
			wantOK(t, gen.id, gen.read, resp)
		}
		// Host is set on the request itself.
		for _, host := range []string{stake, "api.binance.com", "localhost", "127.0.0.1"} {
			req, _ := http.NewRequest(gen.read.method, h.gw+"/"+gen.id+gen.read.path, nil)
			req.Host = host
			req.Header.Set("Authorization", "Bearer "+all)
			r, err := h.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, r.Body)
			_ = r.Body.Close()
			if r.StatusCode != http.StatusOK {
				t.Errorf("Host %s: status %d", host, r.StatusCode)
			}
		}
		// Absolute-form request targets name a host: ignored, the path
		// decides the venue.
		ans := rawExchange(t, h, "GET http://"+stake+"/generic/api/v1/balance HTTP/1.1\r\nHost: "+stake+"\r\nAuthorization: Bearer "+all+"\r\n\r\n")
		if ans.closed || ans.resp.StatusCode != http.StatusOK {
			t.Errorf("absolute-form target: closed %v, answer %v", ans.closed, ans.resp)
		}
		ans = rawExchange(t, h, "GET https://"+stake+"/graphql HTTP/1.1\r\nHost: "+stake+"\r\nAuthorization: Bearer "+all+"\r\n\r\n")
		if ans.closed || ans.resp.StatusCode/100 != 4 {
			t.Errorf("absolute-form target at another venue's host: closed %v, answer %v", ans.closed, ans.resp)
		}
		after := sandboxRequests(h)
		for v, n := range after {
			if v != gen.id && n != before[v] {
				t.Errorf("venue %s saw %d request(s) sent to the generic venue", v, n-before[v])
			}
		}
		if d := delta(genBefore, h.sb.Stats(gen.id)); d.requests != 7 || d.authFailures != 0 {
			t.Errorf("generic venue: %+v, want 7 correctly signed reads", d)
		}
	})

	t.Run("bot-supplied credential headers are replaced", func(t *testing.T) {
		before := h.sb.Stats(gen.id)
		forged := http.Header{"X-Api-Key": {"forged-key"}, "X-Signature": {strings.Repeat("0", 64)}, "X-Timestamp": {"1"}}
		for _, r := range []botRequest{gen.read, gen.order} {
			resp, err := h.callHeader(all, gen.id, r, forged)
			if err != nil {
				t.Fatal(err)
			}
			wantOK(t, gen.id, r, resp)
		}
		if d := delta(before, h.sb.Stats(gen.id)); d.authFailures != 0 || d.orders != 1 {
			t.Errorf("venue: %+v, want 1 order and no auth failure", d)
		}
	})

	t.Run("a token for one venue is never signed for another", func(t *testing.T) {
		before := sandboxRequests(h)
		for _, v := range e2eVenues() {
			if v.id == gen.id {
				continue
			}
			resp := h.mustCall(t, ro, v.id, v.read)
			wantGatewayError(t, resp, http.StatusForbidden)
			wantAudit(t, h, resp, v.id, "deny", "token.venue")
		}
		wantNoVenueRequests(t, h, before)
	})

	t.Run("invalid UTF-8 in tokens, headers and bodies", func(t *testing.T) {
		before := sandboxRequests(h)
		for _, bad := range []string{"kst_test_\xff\xfe", "\xc0\xaf", "kst_" + strings.Repeat("\xff", 60)} {
			ans := rawExchange(t, h, "GET /generic/api/v1/balance HTTP/1.1\r\nHost: x\r\nKeystile-Token: "+bad+"\r\n\r\n")
			if ans.closed || ans.resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("invalid UTF-8 token: closed %v answer %v, want 401", ans.closed, ans.resp)
				continue
			}
			resp := botResponse{status: ans.resp.StatusCode, header: ans.resp.Header, body: ans.body}
			wantAudit(t, h, resp, gen.id, "deny", "")
		}
		wantNoVenueRequests(t, h, before)
		// Invalid UTF-8 in a header and in a JSON body reaches the venue
		// (keystile does not rewrite what it signs); the venue refuses
		// the body and keystile relays that.
		resp, err := h.callHeader(all, gen.id, gen.read, http.Header{"X-Note": {"\xff\xfe"}})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, gen.id, gen.read, resp)
		resp, err = h.call(all, gen.id, botRequest{"POST", gen.order.path, `{"market_id":"M1\xff","selection_id":"S1","side":"back","price":2.0,"size":5,"client_order_id":"u\xc0"}`})
		if err != nil {
			t.Fatal(err)
		}
		if resp.status >= 500 {
			t.Errorf("invalid UTF-8 body: status %d", resp.status)
		}
	})
	wantProcessHealthy(t, h, all)
}

// TestHostileSlowClients: slow-loris clients that never finish their
// headers, or their body, are cut off after the listener's timeouts, and
// meanwhile other bots are served normally. Nothing reaches a venue.
func TestHostileSlowClients(t *testing.T) {
	h := hostileHarness(t) // read_header_timeout 500ms, read_timeout 1.5s
	tok := h.botToken(t).Token
	gen := e2eVenues()[4]
	before := sandboxRequests(h)

	const n = 40
	type slow struct {
		c    net.Conn
		kind string
	}
	var conns []slow
	for i := range n {
		c, err := net.DialTimeout("tcp", h.srv.GatewayAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		kind := "headers"
		payload := "GET /generic/api/v1/balance HTTP/1.1\r\nHost: x\r\nX-Slow: "
		if i%2 == 1 {
			kind = "body"
			payload = "POST /generic/api/v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
				"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"market_id\":"
		}
		if _, err := io.WriteString(c, payload); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, slow{c, kind})
	}
	start := time.Now()
	// Other bots are served while the slow clients hold connections.
	for range 3 {
		wantOK(t, gen.id, gen.read, h.mustCall(t, tok, gen.id, gen.read))
	}
	// Dribble one byte each 100ms: the timeouts are absolute, so this
	// does not keep a connection alive.
	stop := time.After(3 * time.Second)
dribble:
	for {
		select {
		case <-stop:
			break dribble
		case <-time.After(100 * time.Millisecond):
			for _, s := range conns {
				_, _ = s.c.Write([]byte("a"))
			}
		}
	}
	for _, s := range conns {
		_ = s.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		ans := readRaw(t, s.c)
		switch {
		case ans.closed:
		case ans.resp.StatusCode >= 400 && ans.resp.StatusCode < 500:
			if s.kind == "body" && ans.resp.StatusCode != http.StatusBadRequest && ans.resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("slow body: status %d, want 400 or 408", ans.resp.StatusCode)
			}
		default:
			t.Errorf("slow %s: status %d, want a 4xx or a close", s.kind, ans.resp.StatusCode)
		}
	}
	t.Logf("%d slow clients cut off within %v", n, time.Since(start))
	// The slow-body requests were authenticated and then failed reading:
	// they are audited as refused, and no venue saw any of them.
	after := sandboxRequests(h)
	for v, n := range after {
		want := before[v]
		if v == gen.id {
			want += 3 // the normal reads
		}
		if n != want {
			t.Errorf("sandbox venue %s saw %d requests, want %d (slow clients must reach no venue)", v, n-before[v], want-before[v])
		}
	}
	denied := 0
	for _, r := range auditRecords(h) {
		if r.Venue == gen.id && r.Method == http.MethodPost && r.Decision == "deny" && r.Rule == "request.body" {
			denied++
		}
	}
	if denied != n/2 {
		t.Errorf("%d slow-body requests audited as request.body denials, want %d", denied, n/2)
	}
	wantProcessHealthy(t, h, tok)
}

// TestHostileTokenBruteForce: after 20 bad tokens from one address the
// gateway answers that address's further unknown tokens 429
// token.brute_force with Retry-After until the bucket refills (one failure
// per 3 s), while a valid token from the same address is served all along;
// every refusal is audited and no guess reaches a venue.
func TestHostileTokenBruteForce(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	good := h.botToken(t).Token
	gen := e2eVenues()[4]
	wantOK(t, gen.id, gen.read, h.mustCall(t, good, gen.id, gen.read))

	last := "x"
	if strings.HasSuffix(good, last) {
		last = "y" // the token itself ended in x: the guess must differ
	}
	guesses := []string{
		"kst_test_" + strings.Repeat("A", 40), // malformed or unknown
		good[:len(good)-1] + last,             // checksum off by one
		"not-a-token", "", " ", "kst_live_", strings.Repeat("k", 4096),
	}
	const burst = 20
	for i := range burst {
		g := guesses[i%len(guesses)]
		if strings.TrimSpace(g) == "" {
			g = "kst_test_short" // an empty token is "missing", not a guess
		}
		resp := h.mustCall(t, g, gen.id, gen.read)
		if resp.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: status %d, want 401", i+1, resp.status)
		}
		rec := wantAudit(t, h, resp, gen.id, "deny", "")
		if !strings.HasPrefix(rec.Rule, "token.") {
			t.Errorf("guess %d: audit rule %q", i+1, rec.Rule)
		}
	}
	// The bucket is full: more guesses are refused with 429; the valid
	// token is served in between.
	for i, tok := range []string{guesses[0], good, guesses[1], good} {
		before := sandboxRequests(h)
		resp := h.mustCall(t, tok, gen.id, gen.read)
		if tok == good {
			wantOK(t, gen.id, gen.read, resp)
			continue
		}
		if resp.status != http.StatusTooManyRequests || resp.errorRule() != "token.brute_force" {
			t.Fatalf("request %d after the burst: status %d rule %q, want 429 token.brute_force", i+1, resp.status, resp.errorRule())
		}
		ra, err := strconv.Atoi(resp.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 5 {
			t.Errorf("Retry-After %q, want 1..5 seconds", resp.header.Get("Retry-After"))
		}
		wantAudit(t, h, resp, gen.id, "deny", "token.brute_force")
		wantNoVenueRequests(t, h, before)
	}
	// Other admin-side state is untouched and the process healthy.
	wantHealthy(t, h)

	// The bucket refills one failure per 3 s: then one more guess is a
	// plain refusal, the next is limited again.
	time.Sleep(3100 * time.Millisecond)
	if resp := h.mustCall(t, guesses[0], gen.id, gen.read); resp.status != http.StatusUnauthorized {
		t.Fatalf("one guess after the refill: %d, want 401", resp.status)
	}
	if resp := h.mustCall(t, guesses[0], gen.id, gen.read); resp.status != http.StatusTooManyRequests {
		t.Fatalf("after the refilled failure was used: %d, want 429", resp.status)
	}
	// The audit log holds every refusal: 20 guesses + 2 limited + 1
	// guess + 1 limited.
	n := 0
	for _, r := range auditRecords(h) {
		if r.Decision == "deny" && strings.HasPrefix(r.Rule, "token.") {
			n++
		}
	}
	if n != burst+2+2 {
		t.Errorf("%d token refusals audited, want %d", n, burst+4)
	}
}
