package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/fwdproxy"
	"github.com/keystile/keystile/internal/masterkey"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/secretref"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
)

// proxyURL is one https address of a venue that the forward proxy routes
// (and the local CA names): live, or a test endpoint.
type proxyURL struct {
	raw  string
	live bool
}

// siblingHosts are the hosts other than baseHost that a venue's API
// spans by path (Binance's futures hosts below api.binance.com).
func siblingHosts(typ, baseHost string) []string {
	if typ == config.TypeBinance {
		return binance.SiblingHosts(baseHost)
	}
	return nil
}

// venueProxyURLs are a venue's https addresses: its base URL (live, or
// the test endpoint of a sandbox venue) and test base URL, the sibling
// hosts of each, and a sandbox venue's proxy_hosts (test endpoints).
func venueProxyURLs(vc config.Venue) []proxyURL {
	var out []proxyURL
	add := func(raw string, live bool) {
		u, err := url.Parse(raw)
		if raw == "" || err != nil || u.Scheme != "https" {
			return
		}
		out = append(out, proxyURL{raw, live})
		for _, h := range siblingHosts(vc.Type, u.Host) {
			out = append(out, proxyURL{"https://" + h, live})
		}
	}
	add(vc.BaseURL, !vc.Sandbox)
	add(vc.TestBaseURL, false)
	if vc.Sandbox {
		for _, h := range vc.ProxyHosts {
			out = append(out, proxyURL{"https://" + h, false})
		}
	}
	return out
}

// proxyRoutes are the forward proxy's routes for the running venues (see
// venueProxyURLs). Plain-http sandbox URLs have none: an SDK does not
// CONNECT for them; a sandbox venue's proxy_hosts stand in for them.
func proxyRoutes(venues map[string]builtVenue) []fwdproxy.Route {
	ids := make([]string, 0, len(venues))
	for id := range venues {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []fwdproxy.Route
	for _, id := range ids {
		b := venues[id]
		shaper, _ := b.gv.Impl.(venue.ErrorShaper)
		hasTest := b.cfg.Sandbox || b.cfg.TestBaseURL != ""
		byAddr := map[string]*fwdproxy.Route{}
		var order []string
		for _, pu := range venueProxyURLs(b.cfg) {
			u, err := url.Parse(pu.raw)
			if err != nil {
				continue
			}
			port := uint16(443)
			if p := u.Port(); p != "" {
				n, err := strconv.ParseUint(p, 10, 16)
				if err != nil || n == 0 {
					continue
				}
				port = uint16(n)
			}
			host, _, err := fwdproxy.ParseAuthority(fwdproxy.JoinAuthority(u.Hostname(), port))
			if err != nil {
				continue
			}
			addr := fwdproxy.JoinAuthority(host, port)
			r := byAddr[addr]
			if r == nil {
				r = &fwdproxy.Route{Venue: id, Host: host, Port: port, HasTest: hasTest, Shaper: shaper}
				byAddr[addr] = r
				order = append(order, addr)
			}
			if pu.live {
				r.Live = true
			} else {
				r.Test = true
			}
		}
		for _, a := range order {
			out = append(out, *byAddr[a])
		}
	}
	return out
}

// openProxy builds the forward proxy and binds its listener (serve
// starts it in Run).
func (s *Server) openProxy() error {
	pc := s.cfg.Proxy
	if pc.Listen == "" {
		return nil
	}
	ca := s.localCA()
	if ca == nil {
		return errors.New("proxy: no local CA")
	}
	g := s.cfg.Gateway
	p, err := fwdproxy.New(fwdproxy.Options{
		Handler: s.gateway, Tokens: s.kill.Guard(s.tokens), Certs: ca, Limiter: s.gateway,
		Events: s.events,
		Routes: proxyRoutes(s.venues), MaxTunnels: pc.MaxTunnels,
		ReadHeaderTimeout: g.ReadHeaderTimeout, ReadTimeout: g.ReadTimeout, WriteTimeout: g.WriteTimeout,
		IdleTimeout: g.IdleTimeout, MaxHeaderBytes: g.MaxHeaderBytes, Logger: s.log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen %s: %w", pc.Listen, err)
	}
	s.proxy, s.proxyLn = p, ln
	return nil
}

// setProxyRoutes puts the running venues' addresses in the proxy (after a
// reload). Called with reloadMu held.
func (s *Server) setProxyRoutes(cfg *config.Config) {
	if s.proxy == nil {
		return
	}
	if err := s.proxy.SetRoutes(proxyRoutes(s.venues)); err != nil {
		s.log.Error("keystile: forward proxy routes not updated", "err", err)
	}
	s.warnUncovered(s.localCA(), cfg)
}

// ProxyAddr is the forward proxy's address ("" if it serves none).
func (s *Server) ProxyAddr() string {
	if s.proxyLn == nil {
		return ""
	}
	return s.proxyLn.Addr().String()
}

// gatewayTLS returns the TLS configuration of the gateway's TCP
// listener, or nil when gateway.tls is off.
func (s *Server) gatewayTLS(ctx context.Context, env Env) (*tls.Config, error) {
	t := s.cfg.Gateway.TLS
	if !t.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if t.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if t.LocalCA {
		ca := s.localCA()
		if ca == nil {
			return nil, errors.New("gateway.tls: no local CA")
		}
		names := gatewayNames(s.cfg.Gateway)
		if _, err := ca.Leaf(ctx, names...); err != nil {
			return nil, fmt.Errorf("gateway.tls: %w", err)
		}
		cfg.GetCertificate = func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf(hi.Context(), names...) }
		return cfg, nil
	}
	r := &certReloader{certFile: t.CertFile, key: t.Key, env: env, vault: s.vault, log: s.log}
	if err := r.load(ctx); err != nil {
		return nil, fmt.Errorf("gateway.tls: %w", err)
	}
	cfg.GetCertificate = r.get
	return cfg, nil
}

// certReloader serves the operator's certificate, re-reading it (and its
// key) when the certificate file changes, checked at most every 30 s: a
// renewed certificate is picked up without a restart.
type certReloader struct {
	certFile, key string
	env           Env
	vault         secretref.Vault
	log           *slog.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	mtime   time.Time
	checked time.Time
}

// ErrKeyFileMode refuses a private key file readable by others.
var ErrKeyFileMode = errors.New("gateway.tls: the key file must not be readable by group or others (chmod 600)")

func (r *certReloader) load(ctx context.Context) error {
	st, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("cert_file: %w", err)
	}
	certPEM, err := os.ReadFile(r.certFile) // #nosec G304 -- the operator's configured certificate
	if err != nil {
		return fmt.Errorf("cert_file: %w", err)
	}
	ref, err := secretref.Parse(r.key)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if ref.Scheme == secretref.SchemeFile || ref.Scheme == secretref.SchemeDotenv {
		ks, err := os.Stat(ref.Target)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("key: %w", err)
		}
		if err == nil && ks.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("%w: %s is %04o", ErrKeyFileMode, ref.Target, ks.Mode().Perm())
		}
	}
	rv := &secretref.Resolver{Getenv: r.env.Getenv, Keyring: masterkey.OSKeyring{}, Vault: r.vault}
	if r.env.Getenv == nil {
		rv.Getenv = os.Getenv
	}
	key, err := rv.Resolve(ctx, ref)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	defer key.Wipe()
	keyPEM := bytes.Clone(key.Reveal())
	defer secret.Wipe(keyPEM)
	if len(keyPEM) > 0 && keyPEM[len(keyPEM)-1] != '\n' {
		keyPEM = append(keyPEM, '\n')
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors describe the PEM, never the key's bytes.
		return fmt.Errorf("cert_file and key do not form a key pair: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if b, _ := pem.Decode(certPEM); b != nil {
			leaf, _ = x509.ParseCertificate(b.Bytes)
		}
	}
	if leaf != nil && time.Now().After(leaf.NotAfter) {
		r.log.Warn("keystile: the gateway's TLS certificate has expired", "file", r.certFile, "not_after", leaf.NotAfter)
	}
	r.mu.Lock()
	r.cur, r.mtime, r.checked = &pair, st.ModTime(), time.Now()
	r.mu.Unlock()
	return nil
}

func (r *certReloader) get(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	cur, due := r.cur, time.Since(r.checked) > 30*time.Second
	if due {
		r.checked = time.Now()
	}
	mtime := r.mtime
	r.mu.Unlock()
	if due {
		if st, err := os.Stat(r.certFile); err == nil && !st.ModTime().Equal(mtime) {
			if err := r.load(hi.Context()); err != nil {
				r.log.Error("keystile: the gateway's renewed TLS certificate was not loaded; keeping the previous one", "err", err)
			} else {
				r.log.Info("keystile: the gateway's TLS certificate was reloaded", "file", r.certFile)
			}
			r.mu.Lock()
			cur = r.cur
			r.mu.Unlock()
		}
	}
	return cur, nil
}
