package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults applied to zero-valued Options fields.
const (
	DefaultConnectTimeout        = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 5 * time.Second
	DefaultResponseHeaderTimeout = 15 * time.Second
	DefaultTotalTimeout          = 30 * time.Second
	DefaultMaxIdleConnsPerHost   = 256
	DefaultIdleConnTimeout       = 90 * time.Second
)

// Options configures a Transport. The zero value is not usable on its own
// (Hosts is required) but every other field has a safe default.
type Options struct {
	// Hosts lists the hosts this transport may reach, as "host" or
	// "host:port" (IPv6 literals in brackets when a port is given). A bare
	// host allows port 443 (and port 80 when AllowPlainHTTPLoopback is set).
	// Names are matched case-insensitively and exactly: no wildcards, no
	// schemes, no paths. Required.
	Hosts []string

	// AllowPlainHTTPLoopback permits http:// URLs, for venues marked
	// sandbox: true. Even then a plain connection is dialled only to
	// loopback addresses (after resolution). If false, http:// is refused.
	AllowPlainHTTPLoopback bool

	// MinTLSVersion is the lowest TLS version accepted. If zero,
	// tls.VersionTLS12. Only tls.VersionTLS12 and tls.VersionTLS13 are valid.
	MinTLSVersion uint16

	// CAFile is a PEM file of trusted root certificates. If set, it replaces
	// the system roots (together with RootCAs, if also set). If empty, the
	// system roots (or RootCAs) are used.
	CAFile string

	// RootCAs, if non-nil, replaces the system roots. Meant for tests and
	// for callers that build a pool themselves.
	RootCAs *x509.CertPool

	// ClientCertificate, if non-nil, is presented for mutual TLS (for
	// example Betfair's certlogin). It must hold a certificate chain and a
	// private key.
	ClientCertificate *tls.Certificate

	// ServerName, if set, is the name used for SNI and certificate
	// verification on every connection. If empty, the dialled host name.
	ServerName string

	// Connect bounds name resolution plus the TCP connect. If zero,
	// DefaultConnectTimeout.
	Connect time.Duration
	// TLSHandshake bounds the TLS handshake. If zero,
	// DefaultTLSHandshakeTimeout.
	TLSHandshake time.Duration
	// ResponseHeader bounds the wait for the response headers once the
	// request is written. If zero, DefaultResponseHeaderTimeout.
	ResponseHeader time.Duration
	// Total bounds one round trip from RoundTrip until the response body is
	// closed (or fully read). If zero, DefaultTotalTimeout.
	Total time.Duration

	// MaxIdleConnsPerHost is the keep-alive pool size per host. If zero,
	// DefaultMaxIdleConnsPerHost (Go's own default of 2 costs ~6x
	// throughput under load).
	MaxIdleConnsPerHost int
	// IdleConnTimeout is how long an idle pooled connection is kept. If
	// zero, DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration

	// Resolver resolves host names. If nil, net.DefaultResolver.
	Resolver *net.Resolver

	// Logger receives refusals (warn) and dial details (debug). If nil,
	// nothing is logged.
	Logger *slog.Logger
}

// hostKey is a canonical "host:port" string: host lower-cased without a
// trailing dot, IP literals in their canonical form, IPv6 in brackets.
type hostKey string

// Validate reports the first problem with o, or nil.
func (o *Options) Validate() error {
	_, err := o.allowedSet()
	if err != nil {
		return err
	}
	switch o.MinTLSVersion {
	case 0, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("upstream: %w: min TLS version 0x%04x (only TLS 1.2 and 1.3 are allowed)", ErrInvalidOptions, o.MinTLSVersion)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connect timeout", o.Connect},
		{"tls handshake timeout", o.TLSHandshake},
		{"response header timeout", o.ResponseHeader},
		{"total timeout", o.Total},
		{"idle connection timeout", o.IdleConnTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("upstream: %w: negative %s %s", ErrInvalidOptions, d.name, d.v)
		}
	}
	if o.MaxIdleConnsPerHost < 0 {
		return fmt.Errorf("upstream: %w: negative max idle connections per host", ErrInvalidOptions)
	}
	if c := o.ClientCertificate; c != nil && (len(c.Certificate) == 0 || c.PrivateKey == nil) {
		return fmt.Errorf("upstream: %w: client certificate needs a certificate chain and a private key", ErrInvalidOptions)
	}
	if o.ServerName != "" {
		if _, err := canonicalHost(o.ServerName); err != nil {
			return fmt.Errorf("upstream: %w: server name: %w", ErrInvalidOptions, err)
		}
	}
	if o.CAFile != "" {
		if _, err := o.rootPool(); err != nil {
			return err
		}
	}
	return nil
}

// allowedSet turns Hosts into the set of canonical host:port keys.
func (o *Options) allowedSet() (map[hostKey]struct{}, error) {
	if len(o.Hosts) == 0 {
		return nil, fmt.Errorf("upstream: %w: no hosts allowed", ErrInvalidOptions)
	}
	set := make(map[hostKey]struct{}, 2*len(o.Hosts))
	for _, h := range o.Hosts {
		host, port, hasPort, err := parseHostEntry(h)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w: host %q: %w", ErrInvalidOptions, h, err)
		}
		if hasPort {
			set[makeKey(host, port)] = struct{}{}
			continue
		}
		set[makeKey(host, "443")] = struct{}{}
		if o.AllowPlainHTTPLoopback {
			set[makeKey(host, "80")] = struct{}{}
		}
	}
	return set, nil
}

// rootPool builds the root pool from RootCAs and CAFile; nil means the
// system roots.
func (o *Options) rootPool() (*x509.CertPool, error) {
	if o.CAFile == "" {
		return o.RootCAs, nil
	}
	pool := x509.NewCertPool()
	if o.RootCAs != nil {
		pool = o.RootCAs.Clone()
	}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w: read CA file: %w", ErrInvalidOptions, err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream: %w: CA file %s holds no PEM certificate", ErrInvalidOptions, o.CAFile)
	}
	return pool, nil
}

func makeKey(host, port string) hostKey {
	return hostKey(net.JoinHostPort(host, port))
}

// parseHostEntry parses an Options.Hosts entry.
func parseHostEntry(s string) (host, port string, hasPort bool, err error) {
	if s == "" || strings.ContainsAny(s, "/@?#*% \t\r\n") {
		return "", "", false, errors.New("want host or host:port, without scheme, path, user or wildcard")
	}
	if h, p, splitErr := net.SplitHostPort(s); splitErr == nil {
		host, err = canonicalHost(h)
		if err != nil {
			return "", "", false, err
		}
		if err := checkPort(p); err != nil {
			return "", "", false, err
		}
		return host, p, true, nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	host, err = canonicalHost(s)
	return host, "", false, err
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
		return fmt.Errorf("bad port %q", p)
	}
	return nil
}

// canonicalHost lower-cases a name and strips one trailing dot, or returns
// the canonical text of an IP literal (IPv4-mapped IPv6 unmapped). Zones
// are refused.
func canonicalHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", errors.New("IPv6 zones are not allowed")
		}
		return a.Unmap().String(), nil
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", errors.New("bad host name")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad host name %q", h)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return "", fmt.Errorf("bad host name %q", h)
			}
		}
	}
	return h, nil
}

// keyFor canonicalises a "host:port" address (as the pool dials it).
func keyFor(addr string) (hostKey, string, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", err
	}
	host, err := canonicalHost(h)
	if err != nil {
		return "", "", err
	}
	if err := checkPort(p); err != nil {
		return "", "", err
	}
	return makeKey(host, p), host, nil
}
