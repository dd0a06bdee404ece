package fwdproxy_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/fwdproxy"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// seen is what the handler behind the proxy received.
type seen struct {
	Method, Path, RequestURI, Host, Remote string
	Header                                 http.Header
	Body                                   string
}

// recorder stands where the gateway is: it records each rewritten request
// and answers 200, or a keystile-style refusal for paths ending in /deny.
type recorder struct {
	quiet bool // benchmarks: record nothing
	mu    sync.Mutex
	got   []seen
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if !rc.quiet {
		rc.mu.Lock()
		rc.got = append(rc.got, seen{r.Method, r.URL.EscapedPath(), r.RequestURI, r.Host, r.RemoteAddr, r.Header.Clone(), string(b)})
		rc.mu.Unlock()
	}
	w.Header().Set(gateway.HeaderRequestID, "req-1")
	if strings.HasSuffix(r.URL.Path, "/deny") {
		w.Header().Set(gateway.HeaderError, "denied")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":{"code":"denied","message":"request refused by keystile policy","rule":"policy.p.max_notional","request_id":"req-1"}}`+"\n")
		return
	}
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (rc *recorder) requests() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seen(nil), rc.got...)
}

// env is a running proxy with a real vault, local CA and token service on
// SQLite, and a recorder behind it.
type env struct {
	t       testing.TB
	proxy   *fwdproxy.Proxy
	addr    string // proxy listener
	ca      *localca.CA
	tokens  *token.Service
	gw      *gateway.Gateway // the failed-authentication limiter
	rec     *recorder
	venueLn net.Listener // an address routed to venue "binance" (never dialled)
	venue   string       // host:port of that address
}

type envOptions struct {
	routes     func(host string, port uint16) []fwdproxy.Route
	maxTunnels int
	burst      int
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b := make([]byte, vault.KeySize)
	_, _ = rand.Read(b)
	root := secret.New(b)
	if err := vault.Initialize(ctx, db.Vault(), root, map[string][]byte{"master_key": []byte(`{}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	co := localca.Options{Vault: v, CertFile: filepath.Join(dir, "local-ca.pem")}
	if _, err := localca.Create(ctx, co, localca.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca, err := localca.Load(ctx, co)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Tokens: svc, AuthFailureBurst: o.burst, AuthFailureEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The "venue" address is a listener of its own, so that tests can
	// check nothing ever connects to it: the proxy terminates tunnels
	// itself and never dials their target.
	vln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vln.Close() })
	vport := uint16(vln.Addr().(*net.TCPAddr).Port)
	routes := []fwdproxy.Route{{Venue: "binance", Host: "127.0.0.1", Port: vport, Live: true, Test: true, HasTest: true}}
	if o.routes != nil {
		routes = o.routes("127.0.0.1", vport)
	}
	rec := &recorder{}
	p, err := fwdproxy.New(fwdproxy.Options{Handler: rec, Tokens: svc, Certs: ca, Limiter: gw, Routes: routes, MaxTunnels: o.maxTunnels})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(sctx)
	})
	return &env{t: t, proxy: p, addr: ln.Addr().String(), ca: ca, tokens: svc, gw: gw, rec: rec, venueLn: vln,
		venue: vln.Addr().String()}
}

// mint creates a token for venues.
func (e *env) mint(test bool, cidrs []string, venues ...string) string {
	e.t.Helper()
	req := token.CreateRequest{Name: "bot", Venues: venues, Test: test, TTL: time.Hour}
	for _, c := range cidrs {
		req.CIDRs = append(req.CIDRs, netip.MustParsePrefix(c))
	}
	raw, _, err := e.tokens.Create(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(raw.Reveal())
}

// client is a Go HTTP client that uses the proxy with tok (empty: no
// credentials) and trusts only the local CA.
func (e *env) client(tok string) *http.Client {
	u := &url.URL{Scheme: "http", Host: e.addr}
	if tok != "" {
		u.User = url.User(tok)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// connect sends one raw CONNECT with the given Proxy-Authorization (none
// if empty) and returns the status and the connection (left open).
func (e *env) connect(target, auth string) (int, http.Header, net.Conn, *bufio.Reader) {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		e.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		e.t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return resp.StatusCode, resp.Header, c, br
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// countAccepts counts the connections a listener accepts from now on.
func countAccepts(ln net.Listener) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	return &n
}

// tlsOver starts TLS for host over an established tunnel.
func (e *env) tlsOver(c net.Conn, br *bufio.Reader, serverName string) (*tls.Conn, error) {
	if serverName == "" {
		serverName = "127.0.0.1" // verified against the IP; Go sends no SNI for it
	}
	cfg := &tls.Config{RootCAs: e.ca.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
	tc := tls.Client(&readerConn{Conn: c, r: br}, cfg)
	return tc, tc.Handshake()
}

type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// rawRequest writes one HTTP/1.1 request over a tunnel and reads the answer.
func rawRequest(c net.Conn, req string) (*http.Response, []byte, error) {
	if _, err := io.WriteString(c, req); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}
