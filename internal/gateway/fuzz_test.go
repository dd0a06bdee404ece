package gateway_test

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/token"
)

// FuzzServeHTTP throws hostile requests at a gateway whose upstream is a
// real TLS server. Properties: no panic; no 5xx other than 502/503/504;
// the upstream never receives a request outside the prefix of the venue
// named by the request; exactly one audit event per non-health request;
// the venue credential never appears in an answer.
func FuzzServeHTTP(f *testing.F) {
	events := &countSink{}
	h := newHarness(f, config{events: events, maxBody: 4096})
	tok, _ := h.mint(token.CreateRequest{Venues: []string{"v", "w", "t"}, Scopes: []string{"*", "wallet.withdraw"}})
	prefixes := map[string]string{"v": prefixV, "w": prefixW, "t": prefixT}

	for _, s := range []struct {
		method, path, query, headers string
		body                         []byte
		withToken                    bool
	}{
		{"GET", "/v/api/ticker", "", "", nil, true},
		{"POST", "/v/echo/a%20b", "x=1&y=%2F", "Content-Type: application/json\nX-Test-Key: bot", []byte(`{"a":1}`), true},
		{"GET", "/v/..%2fw/x", "", "", nil, true},
		{"GET", "/v/%2e%2e/w/api/ticker", "", "", nil, true},
		{"GET", "/v/echo/%2E%2e/%2e./w", "", "", nil, true},
		{"GET", "/v/echo/\\..\\w", "", "", nil, true},
		{"GET", "/w/echo/x", "q", "Keystile-Token: kst_live_x", nil, false},
		{"DELETE", "/v/api/order/1", "", "X-Forwarded-For: 1.2.3.4\nCookie: a=b\nX-HTTP-Method-Override: POST", nil, true},
		{"PUT", "//", "", "", nil, true},
		{"GET", "/-/readyz", "", "", nil, false},
		{"CONNECT", "/v/echo", "", "", nil, true},
		{"POST", "/v/api/withdraw", "", "Transfer-Encoding: chunked", []byte("x"), true},
		{"GET", "/v", "", "", nil, true},
		{"GET", "/t/echo/x", "", "", nil, true},
		{"OPTIONS", "/v/echo/%00", "", "", nil, true},
		{"GET", "/v/echo/x", "a=%zz&b=;", "Accept-Encoding: gzip", nil, true},
		{"GET", "/v/echo/..;/w/api/ticker", "", "", nil, true},
		{"GET", "/v/echo/%252e%252e/%252e%252e/w", "", "", nil, true},
		{"GET", "/v/echo/%c0%ae%c0%ae/w", "", "X-Original-URL: /pfx-w/echo\nUpgrade: websocket\nConnection: Upgrade", nil, true},
		{"GET", "/v/echo/q", "t=kst_live_x&k=%256Bst%255F", "", nil, true},
	} {
		f.Add(s.method, s.path, s.query, s.headers, s.body, s.withToken)
	}

	f.Fuzz(func(t *testing.T, method, target, query, headers string, body []byte, withToken bool) {
		// Serialise the request and parse it as a server would; what the
		// HTTP parser refuses never reaches the gateway.
		var b bytes.Buffer
		uri := target
		if query != "" {
			uri += "?" + query
		}
		b.WriteString(method + " " + uri + " HTTP/1.1\r\nHost: gateway\r\n")
		if withToken {
			b.WriteString("Authorization: Bearer " + tok + "\r\n")
		}
		for line := range strings.SplitSeq(headers, "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			b.WriteString(strings.TrimRight(line, "\r") + "\r\n")
		}
		if !strings.Contains(strings.ToLower(headers), "content-length") && !strings.Contains(strings.ToLower(headers), "transfer-encoding") {
			b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
		}
		b.WriteString("\r\n")
		b.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&b))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:40000"

		h.up.reset()
		before := events.n.Load()
		rec := httptest.NewRecorder()
		h.gw.ServeHTTP(rec, req)

		if c := rec.Code; c >= 500 && c != 502 && c != 503 && c != 504 {
			t.Fatalf("status %d for %q %q", c, method, uri)
		}
		for _, s := range []string{canary, tok} {
			if strings.Contains(rec.Body.String(), s) {
				t.Fatalf("answer leaks a secret: %q", rec.Body.String())
			}
			for k, vs := range rec.Header() {
				for _, v := range vs {
					if strings.Contains(v, s) {
						t.Fatalf("header %s leaks a secret", k)
					}
				}
			}
		}
		escaped := req.URL.EscapedPath()
		if escaped != "/-/healthz" && escaped != "/-/readyz" {
			if n := events.n.Load() - before; n != 1 {
				t.Fatalf("%d audit events for %q %q", n, method, uri)
			}
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(escaped, "/"), "/")
		prefix, known := prefixes[id]
		for _, got := range h.up.requests() {
			if !known {
				t.Fatalf("upstream received %q for a request to unknown venue %q", got.RequestURI, id)
			}
			if !strings.HasPrefix(got.RequestURI, prefix+"/") {
				t.Fatalf("upstream received %q, outside %s/ (request %q)", got.RequestURI, prefix, uri)
			}
			dec, err := url.PathUnescape(strings.SplitN(got.RequestURI, "?", 2)[0])
			if err != nil {
				t.Fatalf("upstream path %q: %v", got.RequestURI, err)
			}
			if c := path.Clean(dec); c != prefix && !strings.HasPrefix(c, prefix+"/") {
				t.Fatalf("upstream path %q resolves to %q, outside %s (request %q)", got.RequestURI, c, prefix, uri)
			}
		}
	})
}
