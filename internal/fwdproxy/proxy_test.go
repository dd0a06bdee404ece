package fwdproxy_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/fwdproxy"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

// TestTunnelRewritesIntoGatewayForm: a Go client with Transport.Proxy and
// the CA as its only root reaches the handler with /<venue>/<path>, the
// query and body unchanged, its own address as RemoteAddr.
func TestTunnelRewritesIntoGatewayForm(t *testing.T) {
	e := newEnv(t, envOptions{})
	accepts := countAccepts(e.venueLn)
	tok := e.mint(true, nil, "binance")
	c := e.client(tok)
	for _, tc := range []struct {
		name, method, target, body, wantPath, wantURI string
	}{
		{"get with query", "GET", "/api/v3/ticker/price?symbol=BTCUSDT", "", "/binance/api/v3/ticker/price", "/binance/api/v3/ticker/price?symbol=BTCUSDT"},
		{"post with body", "POST", "/api/v3/order?symbol=BTCUSDT&side=BUY", "quantity=1", "/binance/api/v3/order", "/binance/api/v3/order?symbol=BTCUSDT&side=BUY"},
		{"escaped path kept", "GET", "/api/v3/a%20b", "", "/binance/api/v3/a%20b", "/binance/api/v3/a%20b"},
		{"encoded slash kept for the gateway to refuse", "GET", "/api/v3%2F..%2Fx", "", "/binance/api/v3%2F..%2Fx", "/binance/api/v3%2F..%2Fx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "https://"+e.venue+tc.target, strings.NewReader(tc.body))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
				t.Fatalf("status %d proto %s", resp.StatusCode, resp.Proto)
			}
			got := e.rec.requests()
			last := got[len(got)-1]
			if last.Path != tc.wantPath || last.RequestURI != tc.wantURI || last.Body != tc.body || last.Method != tc.method {
				t.Fatalf("handler saw %+v", last)
			}
			if !strings.HasPrefix(last.Remote, "127.0.0.1:") {
				t.Errorf("RemoteAddr %q is not the client's", last.Remote)
			}
			if last.Header.Get("Proxy-Authorization") != "" {
				t.Error("the CONNECT's Proxy-Authorization reached the handler")
			}
		})
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("the venue address was dialled %d times", n)
	}
}

// TestConnectRefusals: everything but an authenticated CONNECT to a venue
// address is refused, and nothing is ever dialled.
func TestConnectRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherAccepts := countAccepts(other)
	venueAccepts := countAccepts(e.venueLn)
	tok := e.mint(true, nil, "binance")
	live := e.mint(false, nil, "binance")
	kraken := e.mint(true, nil, "kraken")
	for _, tc := range []struct {
		name, target, auth string
		want               int
	}{
		{"not a venue", other.Addr().String(), basic(tok, ""), http.StatusForbidden},
		{"not a venue, no token", other.Addr().String(), "", http.StatusForbidden},
		{"venue host on another port", "127.0.0.1:1", basic(tok, ""), http.StatusForbidden},
		{"venue by another name", "localhost:" + e.venue[strings.LastIndex(e.venue, ":")+1:], basic(tok, ""), http.StatusForbidden},
		{"no proxy authorization", e.venue, "", http.StatusProxyAuthRequired},
		{"unknown token", e.venue, basic("kst_test_"+strings.Repeat("A", 43)+"AAAAAA", ""), http.StatusProxyAuthRequired},
		{"not a token", e.venue, basic("alice", "secret"), http.StatusProxyAuthRequired},
		{"digest scheme", e.venue, "Digest username=\"x\"", http.StatusProxyAuthRequired},
		{"token as password", e.venue, basic("user", tok), http.StatusOK},
		{"bearer", e.venue, "Bearer " + tok, http.StatusOK},
		{"token for another venue", e.venue, basic(kraken, ""), http.StatusForbidden},
		{"malformed target", "127.0.0.1", basic(tok, ""), http.StatusBadRequest},
		{"userinfo in target", "x@" + e.venue, basic(tok, ""), http.StatusBadRequest},
		{"live token, live and test address", e.venue, basic(live, ""), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, _, _ := e.connect(tc.target, tc.auth)
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
			if status == http.StatusProxyAuthRequired && !strings.HasPrefix(hdr.Get("Proxy-Authenticate"), "Basic") {
				t.Errorf("407 without Proxy-Authenticate: %v", hdr)
			}
			// (net/http itself refuses a target with user info.)
			if status != 200 && tc.name != "userinfo in target" && hdr.Get("Keystile-Request-Id") == "" {
				t.Error("refusal without a request id")
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if n := otherAccepts.Load(); n != 0 {
		t.Errorf("a refused CONNECT target was dialled %d times", n)
	}
	if n := venueAccepts.Load(); n != 0 {
		t.Errorf("the venue address was dialled %d times", n)
	}
}

// TestPlainHTTPProxyRefused: absolute-form requests (HTTP_PROXY) are never
// forwarded, to a venue or anywhere else.
func TestPlainHTTPProxyRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mint(true, nil, "binance")
	for _, target := range []string{"http://" + e.venue + "/api/v3/account", "http://example.com/", "https://" + e.venue + "/api/v3/account"} {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		resp, body, err := rawRequest(c, "GET "+target+" HTTP/1.1\r\nHost: x\r\nProxy-Authorization: "+basic(tok, "")+"\r\n\r\n")
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "plain_http_refused") {
			t.Errorf("%s: %d %s", target, resp.StatusCode, body)
		}
	}
	// Go's client with HTTP_PROXY semantics for an http:// URL.
	req, _ := http.NewRequest("GET", "http://"+e.venue+"/api/v3/account", nil)
	resp, err := e.client(tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("plain http through the proxy: %d", resp.StatusCode)
	}
	if n := len(e.rec.requests()); n != 0 {
		t.Fatalf("%d plain-HTTP requests reached the gateway", n)
	}
	// The proxy answers its own health check.
	hr, err := http.Get("http://" + e.addr + "/-/healthz")
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 200 {
		t.Errorf("healthz %d", hr.StatusCode)
	}
}

// TestTunnelBoundToHost: a request inside the tunnel that names another
// Host is misdirected (421), an absolute target is refused, and OPTIONS *
// never reaches the gateway.
func TestTunnelBoundToHost(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mint(true, nil, "binance")
	status, _, c, br := e.connect(e.venue, basic(tok, ""))
	if status != 200 {
		t.Fatalf("CONNECT %d", status)
	}
	tc, err := e.tlsOver(c, br, "")
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	for _, tt := range []struct {
		name, req string
		want      int
	}{
		{"other host", "GET /api/v3/account HTTP/1.1\r\nHost: api.kraken.com\r\n\r\n", http.StatusMisdirectedRequest},
		{"other port", "GET /api/v3/account HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", http.StatusMisdirectedRequest},
		{"absolute target", "GET https://api.kraken.com/0/private/Balance HTTP/1.1\r\nHost: " + e.venue + "\r\n\r\n", http.StatusBadRequest},
		// net/http answers OPTIONS * itself; it never reaches the gateway.
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: " + e.venue + "\r\n\r\n", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, c, br := e.connect(e.venue, basic(tok, ""))
			if status != 200 {
				t.Fatalf("CONNECT %d", status)
			}
			tc, err := e.tlsOver(c, br, "")
			if err != nil {
				t.Fatal(err)
			}
			resp, _, err := rawRequest(tc, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	resp, _, err := rawRequest(tc, "GET /api/v3/time HTTP/1.1\r\nHost: "+e.venue+"\r\n\r\n")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("same host: %v %v", resp, err)
	}
	if n := len(e.rec.requests()); n != 1 {
		t.Fatalf("%d requests reached the handler, want 1", n)
	}
}

// TestServerNameMustMatch: a client that asks (SNI) for another name than
// the CONNECT's host gets no certificate.
func TestServerNameMustMatch(t *testing.T) {
	routes := func(host string, port uint16) []fwdproxy.Route {
		return []fwdproxy.Route{{Venue: "binance", Host: "localhost", Port: port, Live: true, Test: true, HasTest: true}}
	}
	e := newEnv(t, envOptions{routes: routes})
	tok := e.mint(true, nil, "binance")
	port := e.venue[strings.LastIndex(e.venue, ":")+1:]
	status, _, c, br := e.connect("localhost:"+port, basic(tok, ""))
	if status != 200 {
		t.Fatalf("CONNECT %d", status)
	}
	if _, err := e.tlsOver(c, br, "api.binance.com"); err == nil {
		t.Fatal("handshake succeeded for another server name")
	}
	status, _, c, br = e.connect("LOCALHOST:"+port, basic(tok, ""))
	if status != 200 {
		t.Fatalf("CONNECT %d", status)
	}
	if _, err := e.tlsOver(c, br, "localhost"); err != nil {
		t.Fatalf("matching server name: %v", err)
	}
}

// TestPipelinedClientHello: a client that sends its ClientHello right
// behind the CONNECT, before reading the 200, still gets its tunnel.
func TestPipelinedClientHello(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.mint(true, nil, "binance")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "CONNECT "+e.venue+" HTTP/1.1\r\nHost: "+e.venue+"\r\nProxy-Authorization: "+basic(tok, "")+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The TLS client writes its ClientHello at once; its reads first
	// skip the proxy's 200 answer.
	tc := tls.Client(&skipResponse{Conn: c}, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("pipelined handshake: %v", err)
	}
	resp, _, err := rawRequest(tc, "GET /api/v3/time HTTP/1.1\r\nHost: "+e.venue+"\r\n\r\n")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request: %v %v", resp, err)
	}
}

// skipResponse drops the proxy's "HTTP/1.1 200 ...\r\n\r\n" from the reads.
type skipResponse struct {
	net.Conn
	skipped bool
}

func (s *skipResponse) Read(b []byte) (int, error) {
	if !s.skipped {
		var hdr []byte
		one := make([]byte, 1)
		for !strings.HasSuffix(string(hdr), "\r\n\r\n") {
			if _, err := s.Conn.Read(one); err != nil {
				return 0, err
			}
			hdr = append(hdr, one[0])
		}
		if !strings.HasPrefix(string(hdr), "HTTP/1.1 200") {
			return 0, errors.New("CONNECT refused: " + string(hdr))
		}
		s.skipped = true
	}
	return s.Conn.Read(b)
}

// TestRefusalsShapedForTheVenue: a keystile refusal (marked by the
// gateway) reaches an SDK in the venue's error format, anything else
// passes through unchanged.
func TestRefusalsShapedForTheVenue(t *testing.T) {
	bn, err := binance.New(binance.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	routes := func(host string, port uint16) []fwdproxy.Route {
		return []fwdproxy.Route{{Venue: "binance", Host: host, Port: port, Live: true, Test: true, HasTest: true, Shaper: bn}}
	}
	e := newEnv(t, envOptions{routes: routes})
	c := e.client(e.mint(true, nil, "binance"))
	resp, err := c.Get("https://" + e.venue + "/api/v3/deny")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var be struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.Unmarshal(body, &be); err != nil || be.Code != -2010 || !strings.Contains(be.Msg, "policy.p.max_notional") || !strings.Contains(be.Msg, "req-1") {
		t.Fatalf("shaped refusal: %d %s (%v)", resp.StatusCode, body, err)
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Keystile-Request-Id") != "req-1" {
		t.Errorf("status %d, request id %q", resp.StatusCode, resp.Header.Get("Keystile-Request-Id"))
	}
	resp, err = c.Get("https://" + e.venue + "/api/v3/time")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"ok":true}` {
		t.Fatalf("pass-through answer changed: %s", body)
	}
	// The proxy's own in-tunnel refusals are shaped too.
	status, _, conn, br := e.connect(e.venue, basic(e.mint(true, nil, "binance"), ""))
	if status != 200 {
		t.Fatal(status)
	}
	tc, err := e.tlsOver(conn, br, "")
	if err != nil {
		t.Fatal(err)
	}
	r2, b2, err := rawRequest(tc, "GET /x HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n")
	if err != nil || r2.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(string(b2), `"code":-1102`) {
		t.Fatalf("misdirected, shaped: %v %s %v", r2, b2, err)
	}
}

// TestAmbiguousAndEnvironment: a host served by two venues binds to the one
// the token may use; a token for both is refused; a live token cannot open
// a tunnel to a test-only address, nor a test token to a live-only venue.
func TestAmbiguousAndEnvironment(t *testing.T) {
	routes := func(host string, port uint16) []fwdproxy.Route {
		return []fwdproxy.Route{
			{Venue: "binance", Host: host, Port: port, Live: true},
			{Venue: "binance-sub", Host: host, Port: port, Live: true},
			{Venue: "sandbox", Host: "localhost", Port: port, Test: true, HasTest: true},
		}
	}
	e := newEnv(t, envOptions{routes: routes})
	port := e.venue[strings.LastIndex(e.venue, ":")+1:]
	for _, tc := range []struct {
		name, target, tok string
		want              int
		wantVenue         string
	}{
		{"one of two venues", e.venue, e.mint(false, nil, "binance-sub"), 200, "binance-sub"},
		{"both venues", e.venue, e.mint(false, nil, "binance", "binance-sub"), http.StatusForbidden, ""},
		{"test token, live-only venue", e.venue, e.mint(true, nil, "binance"), http.StatusForbidden, ""},
		{"live token, test address", "localhost:" + port, e.mint(false, nil, "sandbox"), http.StatusForbidden, ""},
		{"test token, test address", "localhost:" + port, e.mint(true, nil, "sandbox"), 200, "sandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, c, br := e.connect(tc.target, basic(tc.tok, ""))
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
			if status != 200 {
				return
			}
			host := tc.target[:strings.LastIndex(tc.target, ":")]
			tlsc, err := e.tlsOver(c, br, host)
			if err != nil {
				t.Fatal(err)
			}
			if resp, _, err := rawRequest(tlsc, "GET /v HTTP/1.1\r\nHost: "+tc.target+"\r\n\r\n"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("request: %v %v", resp, err)
			}
			got := e.rec.requests()
			if p := got[len(got)-1].Path; p != "/"+tc.wantVenue+"/v" {
				t.Fatalf("bound to %s", p)
			}
		})
	}
}

// TestSourceCIDR: a token pinned to another network cannot open a tunnel.
func TestSourceCIDR(t *testing.T) {
	e := newEnv(t, envOptions{})
	status, _, _, _ := e.connect(e.venue, basic(e.mint(true, []string{"10.0.0.0/8"}, "binance"), ""))
	if status != http.StatusForbidden {
		t.Fatalf("status %d", status)
	}
	status, _, _, _ = e.connect(e.venue, basic(e.mint(true, []string{"127.0.0.1/32"}, "binance"), ""))
	if status != 200 {
		t.Fatalf("status %d", status)
	}
}

// TestFailedAuthenticationsLimited: bad tokens on CONNECT count against
// the source's limit shared with the gateway; past it the next guess gets
// 429, but a valid token from the same address is never held back (all
// bots on a host share its address).
func TestFailedAuthenticationsLimited(t *testing.T) {
	e := newEnv(t, envOptions{burst: 3})
	bad := basic("kst_test_"+strings.Repeat("B", 43)+"BBBBBB", "")
	for i := range 3 {
		if status, _, _, _ := e.connect(e.venue, bad); status != http.StatusProxyAuthRequired {
			t.Fatalf("attempt %d: %d", i, status)
		}
	}
	status, hdr, _, _ := e.connect(e.venue, bad)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("a guess after 3 failures: %d %v", status, hdr)
	}
	if status, _, _, _ := e.connect(e.venue, basic(e.mint(true, nil, "binance"), "")); status != http.StatusOK {
		t.Fatalf("a valid token after 3 failures: %d", status)
	}
}

// TestMaxTunnels: tunnels beyond the limit get 503 until one closes.
func TestMaxTunnels(t *testing.T) {
	e := newEnv(t, envOptions{maxTunnels: 1})
	tok := e.mint(true, nil, "binance")
	status, _, c, br := e.connect(e.venue, basic(tok, ""))
	if status != 200 {
		t.Fatal(status)
	}
	tc, err := e.tlsOver(c, br, "")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _, _ := e.connect(e.venue, basic(tok, "")); status != http.StatusServiceUnavailable {
		t.Fatalf("second tunnel: %d", status)
	}
	_ = tc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.proxy.Tunnels() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if status, _, _, _ := e.connect(e.venue, basic(tok, "")); status != 200 {
		t.Fatalf("after closing the first: %d", status)
	}
}

// TestReloadRemovesRoute: after SetRoutes drops the venue, an open
// tunnel's next request is misdirected and new CONNECTs are refused.
func TestReloadRemovesRoute(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(e.mint(true, nil, "binance"))
	resp, err := c.Get("https://" + e.venue + "/api/v3/time")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // so that the tunnel is reused
	resp.Body.Close()
	if err := e.proxy.SetRoutes(nil); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Get("https://" + e.venue + "/api/v3/time")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("open tunnel after reload: %d", resp.StatusCode)
	}
	if status, _, _, _ := e.connect(e.venue, basic(e.mint(true, nil, "binance"), "")); status != http.StatusForbidden {
		t.Fatalf("CONNECT after reload: %d", status)
	}
	if err := e.proxy.SetRoutes([]fwdproxy.Route{{Venue: "x", Host: "API.example.com", Port: 443}}); err == nil {
		t.Fatal("a route with an unnormalized host was accepted")
	}
}
