package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// Transport is keystile's outbound http.RoundTripper. It is safe for
// concurrent use. It never follows redirects and never retries on its own
// (see NewRetrier).
type Transport struct {
	allowed      map[hostKey]struct{}
	plainLoop    bool
	tlsConfig    *tls.Config
	serverName   string
	connect      time.Duration
	handshake    time.Duration
	total        time.Duration
	resolver     *net.Resolver
	dialer       net.Dialer
	log          *slog.Logger
	rt           *http.Transport
	maxRedirects int
}

// New validates o and builds a Transport.
func New(o Options) (*Transport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	allowed, err := o.allowedSet()
	if err != nil {
		return nil, err
	}
	roots, err := o.rootPool()
	if err != nil {
		return nil, err
	}
	minVersion := o.MinTLSVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	cfg := &tls.Config{
		MinVersion:         minVersion,
		RootCAs:            roots,
		NextProtos:         []string{"h2", "http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
	if o.ClientCertificate != nil {
		cfg.Certificates = []tls.Certificate{*o.ClientCertificate}
	}
	serverName := ""
	if o.ServerName != "" {
		serverName, _ = canonicalHost(o.ServerName) // validated above
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	resolver := o.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	t := &Transport{
		allowed:      allowed,
		plainLoop:    o.AllowPlainHTTPLoopback,
		tlsConfig:    cfg,
		serverName:   serverName,
		connect:      orDefault(o.Connect, DefaultConnectTimeout),
		handshake:    orDefault(o.TLSHandshake, DefaultTLSHandshakeTimeout),
		total:        orDefault(o.Total, DefaultTotalTimeout),
		resolver:     resolver,
		log:          log,
		maxRedirects: 5,
	}
	t.dialer = net.Dialer{KeepAlive: 30 * time.Second}
	perHost := o.MaxIdleConnsPerHost
	if perHost == 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	t.rt = &http.Transport{
		Proxy:                  nil, // never from the environment: a proxy would see signed requests
		DialContext:            t.dialPlain,
		DialTLSContext:         t.dialTLS,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           0, // no global cap; the per-host cap applies
		MaxIdleConnsPerHost:    perHost,
		IdleConnTimeout:        orDefault(o.IdleConnTimeout, DefaultIdleConnTimeout),
		ResponseHeaderTimeout:  orDefault(o.ResponseHeader, DefaultResponseHeaderTimeout),
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	return t, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// RoundTrip implements http.RoundTripper. Before anything is dialled it
// refuses a scheme other than https (http only for the loopback sandbox) and
// a URL host or Host header outside Options.Hosts. It bounds the exchange by
// the Total timeout (until the response body is closed), and reports a
// failure after request bytes may have been written as *UnknownOutcomeError.
//
// It changes nothing else in the request, with one exception: for a write
// method, the Idempotency-Key and X-Idempotency-Key header names are sent in
// lower case. Go's http.Transport treats a request carrying either canonical
// name as safe to re-send on a fresh connection when a reused keep-alive
// connection dies after the request was written; for an order placement that
// could mean two orders. HTTP header names are case-insensitive, so the venue
// sees the same header.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.check(req); err != nil {
		closeBody(req)
		t.log.Warn("upstream: request refused", slog.String("method", req.Method), slog.Any("error", err))
		return nil, err
	}
	host := req.URL.Host
	ctx, cancel := context.WithTimeout(req.Context(), t.total)
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	out := req.WithContext(ctx)
	if !isIdempotent(req.Method) {
		out.Header = lowerIdempotencyHeaders(req.Header)
	}
	resp, err := t.rt.RoundTrip(out)
	if err != nil {
		cancel()
		if wrote.Load() {
			return nil, &UnknownOutcomeError{Method: req.Method, Host: host, Err: err}
		}
		return nil, fmt.Errorf("upstream: %s %s: %w", req.Method, host, err)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, ctx: ctx, cancel: cancel}
	return resp, nil
}

// CloseIdleConnections closes pooled idle connections.
func (t *Transport) CloseIdleConnections() { t.rt.CloseIdleConnections() }

func (t *Transport) check(req *http.Request) error {
	if req.URL == nil {
		return fmt.Errorf("upstream: %w: request without url", ErrHostNotAllowed)
	}
	var port string
	switch strings.ToLower(req.URL.Scheme) {
	case "https":
		port = "443"
	case "http":
		if !t.plainLoop {
			return fmt.Errorf("upstream: %w: %s", ErrPlainHTTP, req.URL.Host)
		}
		port = "80"
	default:
		return fmt.Errorf("upstream: %w: %q", ErrSchemeNotAllowed, req.URL.Scheme)
	}
	if req.URL.User != nil {
		return fmt.Errorf("upstream: %w: user info in url", ErrHostNotAllowed)
	}
	if err := t.allowedHost(req.URL.Host, port); err != nil {
		return err
	}
	if req.Host != "" && req.Host != req.URL.Host {
		// The Host header is what the venue routes on: it must be allowed too.
		return t.allowedHost(req.Host, port)
	}
	return nil
}

// allowedHost checks a URL-style host (with or without port).
func (t *Transport) allowedHost(h, defPort string) error {
	key, err := urlHostKey(h, defPort)
	if err != nil {
		return fmt.Errorf("upstream: %w: %q", ErrHostNotAllowed, h)
	}
	if _, ok := t.allowed[key]; !ok {
		return fmt.Errorf("upstream: %w: %s", ErrHostNotAllowed, key)
	}
	return nil
}

// urlHostKey canonicalises a URL host, adding defPort when it has none.
func urlHostKey(h, defPort string) (hostKey, error) {
	addr := h
	if _, _, err := net.SplitHostPort(h); err != nil {
		addr = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defPort)
	}
	key, _, err := keyFor(addr)
	return key, err
}

// dialPlain dials plain-HTTP connections: only for the sandbox, only to
// loopback addresses.
func (t *Transport) dialPlain(ctx context.Context, network, addr string) (net.Conn, error) {
	if !t.plainLoop {
		return nil, fmt.Errorf("%w: dial %s", ErrPlainHTTP, addr)
	}
	c, _, err := t.dialGuarded(ctx, network, addr, true)
	return c, err
}

// dialTLS dials, then runs the TLS handshake with verification always on.
func (t *Transport) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, host, err := t.dialGuarded(ctx, network, addr, false)
	if err != nil {
		return nil, err
	}
	cfg := t.tlsConfig.Clone()
	cfg.ServerName = host
	if t.serverName != "" {
		cfg.ServerName = t.serverName
	}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, t.handshake)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// The dial functions' errors carry no "upstream:" prefix: they only ever
// surface through RoundTrip, which adds it.

// dialGuarded checks addr against the allowlist, resolves it once and dials
// the resolved IPs. With loopbackOnly, non-loopback IPs are never dialled.
func (t *Transport) dialGuarded(ctx context.Context, network, addr string, loopbackOnly bool) (net.Conn, string, error) {
	key, host, err := keyFor(addr)
	if err != nil {
		return nil, "", fmt.Errorf("%w: dial %q", ErrHostNotAllowed, addr)
	}
	if _, ok := t.allowed[key]; !ok {
		t.log.Warn("upstream: dial refused", slog.String("addr", string(key)))
		return nil, "", fmt.Errorf("%w: dial %s", ErrHostNotAllowed, key)
	}
	_, port, _ := net.SplitHostPort(string(key))
	ctx, cancel := context.WithTimeout(ctx, t.connect)
	defer cancel()
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = t.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, "", fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var firstErr error
	dialled := 0
	for _, ip := range ips {
		ip = ip.Unmap()
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || (loopbackOnly && !ip.IsLoopback()) {
			continue
		}
		dialled++
		target := ip.String()
		c, err := t.dialer.DialContext(ctx, network, net.JoinHostPort(target, port))
		if err == nil {
			t.log.Debug("upstream: connected", slog.String("host", string(key)), slog.String("ip", target))
			return c, host, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if dialled == 0 {
		if loopbackOnly {
			return nil, "", fmt.Errorf("%w: %s does not resolve to a loopback address", ErrPlainHTTP, host)
		}
		return nil, "", fmt.Errorf("%w: %s resolves to no usable address", ErrHostNotAllowed, host)
	}
	return nil, "", fmt.Errorf("dial %s: %w", key, firstErr)
}

// cancelOnClose releases the Total-timeout context when the body is closed.
// It also turns an io.EOF seen after the context ended into the context's
// error: Go's http.Transport was observed to end a chunked body cleanly (nil
// error from io.ReadAll) when the request context expired mid-body, which
// would pass a truncated answer off as complete.
type cancelOnClose struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
}

func (b *cancelOnClose) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		if cerr := b.ctx.Err(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func isIdempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// lowerIdempotencyHeaders returns h, or a copy of h in which the canonical
// Idempotency-Key names are replaced by lower-case ones (see RoundTrip).
func lowerIdempotencyHeaders(h http.Header) http.Header {
	const a, b = "Idempotency-Key", "X-Idempotency-Key"
	_, hasA := h[a]
	_, hasB := h[b]
	if !hasA && !hasB {
		return h
	}
	out := h.Clone()
	for _, k := range []string{a, b} {
		if v, ok := out[k]; ok {
			delete(out, k)
			lk := strings.ToLower(k)
			out[lk] = append(out[lk], v...)
		}
	}
	return out
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// errorsIsFinal reports errors that no retry can fix.
func errorsIsFinal(err error) bool {
	var cv *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.Is(err, ErrHostNotAllowed) || errors.Is(err, ErrPlainHTTP) ||
		errors.Is(err, ErrSchemeNotAllowed) || errors.Is(err, ErrBodyNotReplayable) || errors.Is(err, ErrRefused) ||
		errors.As(err, &cv) || errors.As(err, &alert)
}

var _ http.RoundTripper = (*Transport)(nil)
