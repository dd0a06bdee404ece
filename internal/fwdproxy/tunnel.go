package fwdproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/venue"
)

// binding is what a tunnel is bound to, fixed at CONNECT.
type binding struct {
	venue  string
	host   string
	port   uint16
	token  string // the raw kst_ token; never logged
	shaper venue.ErrorShaper
}

type bindingKey struct{}

// tunnelConn is a tunnel's TLS connection as the inner HTTP server sees
// it: it carries the binding (read by ConnContext) and counts itself out
// of the open tunnels when closed.
type tunnelConn struct {
	net.Conn
	b      *binding
	closed sync.Once
	done   func()
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(c.done)
	return err
}

// bufferedConn replays what the CONNECT's reader already buffered (a
// client may send its TLS ClientHello right behind the CONNECT) before
// reading from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// open acknowledges the CONNECT, terminates the tunnel's TLS with a leaf
// for the bound host and hands the connection to the inner HTTP server.
// release gives the tunnel's reserved place back, once, when it ends.
func (p *Proxy) open(w http.ResponseWriter, b *binding, release func()) error {
	rc := http.NewResponseController(w)
	conn, brw, err := rc.Hijack()
	if err != nil {
		release()
		return fmt.Errorf("fwdproxy: hijack: %w", err)
	}
	fail := func(err error) error {
		_ = conn.Close()
		release()
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(p.o.HandshakeTimeout))
	if _, err := brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return fail(fmt.Errorf("fwdproxy: acknowledge CONNECT: %w", err))
	}
	if err := brw.Flush(); err != nil {
		return fail(fmt.Errorf("fwdproxy: acknowledge CONNECT: %w", err))
	}
	var raw net.Conn = conn
	if brw.Reader.Buffered() > 0 {
		raw = &bufferedConn{Conn: conn, r: brw.Reader}
	}
	tc := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			// The certificate is for the host the CONNECT named; a client
			// asking (SNI) for another name is not talking to that host.
			if hi.ServerName != "" {
				if n, err := normalizeHost(hi.ServerName); err != nil || n != b.host {
					return nil, errors.New("fwdproxy: TLS server name does not match the CONNECT host")
				}
			}
			return p.o.Certs.Leaf(hi.Context(), b.host)
		},
	})
	if err := tc.HandshakeContext(context.Background()); err != nil {
		return fail(fmt.Errorf("fwdproxy: TLS handshake: %w", err))
	}
	_ = conn.SetDeadline(time.Time{})
	if !p.conns.push(&tunnelConn{Conn: tc, b: b, done: release}) {
		return fail(errors.New("fwdproxy: shutting down"))
	}
	return nil
}

// chanListener is the inner HTTP server's listener: it accepts the
// tunnels' TLS connections as open hands them over.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	mu     sync.Mutex
	addr   net.Addr
	closed bool
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
}

func (l *chanListener) Close() error { l.close(); return nil }

func (l *chanListener) setAddr(a net.Addr) {
	l.mu.Lock()
	l.addr = a
	l.mu.Unlock()
}

func (l *chanListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addr == nil {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	}
	return l.addr
}

// Tunnelled-request refusals, in keystile's JSON (shaped for the venue
// when it has a shaper).
var (
	errMisdirected = refusal{http.StatusMisdirectedRequest, "misdirected", "this tunnel serves another host: open a tunnel (CONNECT) to this one"}
	errNotRouted   = refusal{http.StatusMisdirectedRequest, "misdirected", "this venue is no longer served at this address; reconnect"}
	errTarget      = refusal{http.StatusBadRequest, "bad_request", "inside a tunnel, requests use origin-form targets (/path)"}
)

// serveTunnelled serves one request read inside a tunnel: it checks the
// request belongs to the tunnel's host, rewrites it to the reverse-proxy
// form /<venue>/<path> and hands it to the gateway with the tunnel's token.
func (p *Proxy) serveTunnelled(w http.ResponseWriter, r *http.Request) {
	b, _ := r.Context().Value(bindingKey{}).(*binding)
	if b == nil {
		http.Error(w, "no tunnel", http.StatusInternalServerError)
		return
	}
	var out http.ResponseWriter = w
	var sw *shapeWriter
	if b.shaper != nil {
		sw = &shapeWriter{ResponseWriter: w, shaper: b.shaper}
		out = sw
	}
	refuse := func(rf refusal) {
		w.Header().Set("Connection", "close")
		out.Header().Set(gateway.HeaderError, rf.code)
		p.writeRefusal(out, rf, newRequestID())
		if sw != nil {
			sw.finish()
		}
	}
	if !p.routed(b) {
		refuse(errNotRouted)
		return
	}
	escaped := r.URL.EscapedPath()
	if r.Method == http.MethodConnect || r.URL.IsAbs() || r.URL.Host != "" || len(escaped) == 0 || escaped[0] != '/' {
		refuse(errTarget)
		return
	}
	if !sameHost(r.Host, b) {
		refuse(errMisdirected)
		return
	}
	u := *r.URL
	u.Path = "/" + b.venue + r.URL.Path
	if r.URL.RawPath != "" {
		u.RawPath = "/" + b.venue + r.URL.RawPath
	}
	r2 := r.WithContext(gateway.WithTunnelToken(r.Context(), b.token))
	r2.URL = &u
	r2.RequestURI = u.RequestURI()
	p.o.Handler.ServeHTTP(out, r2)
	if sw != nil {
		sw.finish()
	}
}

// routed reports whether the tunnel's address still routes to its venue
// (a reload may have removed or moved it).
func (p *Proxy) routed(b *binding) bool {
	for _, r := range (*p.routes.Load())[JoinAuthority(b.host, b.port)] {
		if r.Venue == b.venue {
			return true
		}
	}
	return false
}

// sameHost reports whether a request's Host header names the tunnel's
// host and port (the port may be left out when it is 443).
func sameHost(hostHeader string, b *binding) bool {
	if hostHeader == "" {
		return true // HTTP/1.0 without Host: the tunnel says where
	}
	host, port, err := ParseAuthority(hostHeader)
	if err != nil {
		host, err = normalizeHost(hostHeader)
		if err != nil {
			return false
		}
		port = 443
	}
	return host == b.host && port == b.port
}

// maxRefusalBody bounds the refusal body shapeWriter buffers.
const maxRefusalBody = 64 << 10

// shapeWriter renders keystile's own refusals (marked with
// gateway.HeaderError) in the venue's error format; every other answer
// passes through untouched.
type shapeWriter struct {
	http.ResponseWriter
	shaper    venue.ErrorShaper
	wrote     bool
	intercept bool
	status    int
	buf       bytes.Buffer
}

func (s *shapeWriter) WriteHeader(code int) {
	if s.wrote {
		return
	}
	if code >= 100 && code < 200 {
		s.ResponseWriter.WriteHeader(code)
		return
	}
	s.wrote = true
	if s.Header().Get(gateway.HeaderError) != "" && code >= 400 {
		s.intercept, s.status = true, code
		return
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *shapeWriter) Write(p []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	if s.intercept {
		if s.buf.Len()+len(p) <= maxRefusalBody {
			s.buf.Write(p)
		}
		return len(p), nil
	}
	return s.ResponseWriter.Write(p)
}

// finish writes the shaped refusal, if one was intercepted.
func (s *shapeWriter) finish() {
	if !s.intercept {
		return
	}
	s.intercept = false
	var body struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			Rule      string `json:"rule"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	_ = json.Unmarshal(s.buf.Bytes(), &body)
	h := s.Header()
	rf := venue.Refusal{Status: s.status, Code: h.Get(gateway.HeaderError), Rule: body.Error.Rule,
		Message: body.Error.Message, RequestID: body.Error.RequestID}
	if rf.RequestID == "" {
		rf.RequestID = h.Get(gateway.HeaderRequestID)
	}
	if rf.Message == "" {
		rf.Message = http.StatusText(s.status)
	}
	status, ct, out := s.shaper.ShapeRefusal(rf)
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	s.ResponseWriter.WriteHeader(status)
	_, _ = s.ResponseWriter.Write(out)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *shapeWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
