package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// LocalCAFile is the local CA's certificate (public) in the data dir; its
// key is the vault credential localca.CredentialName.
const LocalCAFile = "local-ca.pem"

// caWarnBefore is how long before its expiry serve warns about the CA.
const caWarnBefore = 30 * 24 * time.Hour

// localCAOptions are the local CA's options for a data dir.
func localCAOptions(v *vault.Vault, dataDir string, cfg *config.Config, log *slog.Logger) localca.Options {
	return localca.Options{Vault: v, CertFile: filepath.Join(dataDir, LocalCAFile), LeafTTL: cfg.LocalCA.LeafTTL, Logger: log}
}

// needsLocalCA reports whether the configuration uses the local CA.
func needsLocalCA(cfg *config.Config) bool {
	return cfg.Proxy.Listen != "" || cfg.Gateway.TLS.LocalCA || cfg.Console.TLSLocalCA
}

// CAOptions configure CreateCA.
type CAOptions struct {
	// Constrain limits the CA to the configured venues' hosts and the
	// gateway's TLS names (X.509 name constraints).
	Constrain bool
	// Validity is the CA's lifetime; 0 means localca.DefaultValidity.
	Validity time.Duration
	// Replace creates a new CA even if one exists (rotation).
	Replace bool
}

// caCreateOptions turns CAOptions into the CA's creation options.
func caCreateOptions(cfg *config.Config, o CAOptions) (localca.CreateOptions, error) {
	c := localca.CreateOptions{Validity: o.Validity}
	if o.Constrain {
		c.Constrain = caNames(cfg)
		if len(c.Constrain) == 0 {
			return c, errors.New("ca: --constrain needs at least one venue with an https:// URL, or gateway.tls.local_ca, in the configuration")
		}
	}
	return c, nil
}

// caNames are the names the local CA certifies with this configuration:
// the hosts of every venue's https base and test URLs (the forward proxy's
// CONNECT targets) and the gateway's TLS names.
func caNames(cfg *config.Config) []string {
	var out []string
	add := func(n string) {
		if nn, err := localca.NormalizeName(n); err == nil && !slices.Contains(out, nn) {
			out = append(out, nn)
		}
	}
	for _, id := range sortedVenueIDs(cfg) {
		for _, pu := range venueProxyURLs(cfg.Venues[id]) {
			if u, err := url.Parse(pu.raw); err == nil {
				add(u.Hostname())
			}
		}
	}
	if cfg.Gateway.TLS.LocalCA {
		for _, n := range gatewayNames(cfg.Gateway) {
			add(n)
		}
	}
	if cfg.Console.TLSLocalCA {
		for _, n := range listenNames(cfg.Console.TLSNames, cfg.Console.Listen) {
			add(n)
		}
	}
	slices.Sort(out)
	return out
}

// gatewayNames are the names of the gateway's local-CA certificate:
// gateway.tls.names, or localhost and the loopback addresses plus the
// listen host when it is a specific one.
func gatewayNames(g config.Gateway) []string {
	return listenNames(g.TLS.Names, g.Listen)
}

// listenNames are the names of a listener's local-CA certificate: the
// configured ones, or localhost and the loopback addresses plus the
// listen host when it is a specific one.
func listenNames(configured []string, listen string) []string {
	if len(configured) > 0 {
		return configured
	}
	names := []string{"localhost", "127.0.0.1", "::1"}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			if n, err := localca.NormalizeName(host); err == nil && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// openLocalCA loads the local CA; when the configuration needs one and
// the data dir has none (a data dir from before the local CA existed), it
// creates it. A CA that has expired is an error when it is needed.
func (s *Server) openLocalCA(ctx context.Context) error {
	o := localCAOptions(s.vault, s.dataDir, s.cfg, s.log)
	ca, err := localca.Load(ctx, o)
	if errors.Is(err, localca.ErrNoCA) {
		if !needsLocalCA(s.cfg) {
			return nil
		}
		info, cerr := localca.Create(ctx, o, localca.CreateOptions{})
		if cerr != nil {
			return fmt.Errorf("local CA: %w", cerr)
		}
		s.log.Info("keystile: created the local CA (export it for your bots with `keystile ca export`)", "sha256", info.SHA256)
		ca, err = localca.Load(ctx, o)
	}
	if err != nil {
		if needsLocalCA(s.cfg) {
			return fmt.Errorf("local CA: %w", err)
		}
		s.log.Warn("keystile: the local CA cannot be loaded (not needed by this configuration)", "err", err)
		return nil
	}
	info := ca.Info()
	switch left := time.Until(info.NotAfter); {
	case left <= 0 && needsLocalCA(s.cfg):
		return fmt.Errorf("local CA: %w (expired %s)", localca.ErrExpired, info.NotAfter.Format(time.RFC3339))
	case left < caWarnBefore:
		s.log.Warn("keystile: the local CA expires soon: run `keystile ca rotate` and give bots the new certificate", "not_after", info.NotAfter)
	}
	s.caMu.Lock()
	s.ca = ca
	s.caMu.Unlock()
	s.warnUncovered(ca, s.cfg)
	return nil
}

// localCA is the loaded local CA, or nil.
func (s *Server) localCA() *localca.CA {
	s.caMu.Lock()
	defer s.caMu.Unlock()
	return s.ca
}

// warnUncovered logs the names the configuration needs that the CA's name
// constraints exclude (the proxy cannot serve those hosts).
func (s *Server) warnUncovered(ca *localca.CA, cfg *config.Config) {
	if ca == nil || !needsLocalCA(cfg) {
		return
	}
	var out []string
	for _, n := range caNames(cfg) {
		if !ca.Covers(n) {
			out = append(out, n)
		}
	}
	if len(out) > 0 {
		s.log.Warn("keystile: the local CA's name constraints exclude hosts this configuration serves; `keystile ca rotate --constrain` issues a CA for the current ones", "hosts", out)
	}
}

// caRoutes registers the admin API's local-CA endpoints.
func (s *Server) caRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+admin.PathCA, func(w http.ResponseWriter, _ *http.Request) {
		ca := s.localCA()
		if ca == nil {
			admin.WriteError(w, http.StatusNotFound, "no_ca", localca.ErrNoCA.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, ca.Info())
	})
	create := func(rotate bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req admin.CARequest
			if !admin.DecodeJSON(w, r, &req) {
				return
			}
			co, err := caCreateOptions(s.Config(), CAOptions{Constrain: req.Constrain, Validity: req.Validity})
			if err != nil {
				admin.WriteError(w, http.StatusBadRequest, "invalid", err.Error())
				return
			}
			s.caMu.Lock()
			defer s.caMu.Unlock()
			var info localca.Info
			switch {
			case s.ca != nil && rotate:
				info, err = s.ca.Rotate(r.Context(), co)
			case s.ca != nil:
				err = localca.ErrExists
			default:
				o := localCAOptions(s.vault, s.dataDir, s.cfg, s.log)
				if rotate {
					_, err = localca.Replace(r.Context(), o, co)
				} else {
					_, err = localca.Create(r.Context(), o, co)
				}
				if err == nil {
					var ca *localca.CA
					if ca, err = localca.Load(r.Context(), o); err == nil {
						s.ca, info = ca, ca.Info()
					}
				}
			}
			switch {
			case errors.Is(err, localca.ErrExists):
				admin.WriteError(w, http.StatusConflict, "exists", err.Error())
			case err != nil:
				s.log.Error("keystile: local CA", "err", err)
				admin.WriteError(w, http.StatusBadRequest, "invalid", err.Error())
			default:
				s.log.Info("keystile: local CA created", "rotate", rotate, "sha256", info.SHA256, "name_constraints", info.Constraints)
				admin.WriteJSON(w, http.StatusOK, info)
			}
		}
	}
	mux.HandleFunc("POST "+admin.PathCA, create(false))
	mux.HandleFunc("POST "+admin.PathCA+"/rotate", create(true))
}

// CAOffline runs fn with the data dir's vault open, for the ca commands
// when no server is running.
func CAOffline(ctx context.Context, env Env, dataDir string, cfg *config.Config, fn func(o localca.Options) error) error {
	log := slog.New(slog.DiscardHandler)
	db, v, err := OpenVault(ctx, env, dataDir, cfg, log, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	defer v.Close(ctx)
	return fn(localCAOptions(v, dataDir, cfg, log))
}

// CreateCA creates (or with o.Replace, replaces) the local CA without a
// running server.
func CreateCA(ctx context.Context, env Env, dataDir string, cfg *config.Config, o CAOptions) (localca.Info, error) {
	co, err := caCreateOptions(cfg, o)
	if err != nil {
		return localca.Info{}, err
	}
	var info localca.Info
	err = CAOffline(ctx, env, dataDir, cfg, func(lo localca.Options) error {
		var err error
		if o.Replace {
			info, err = localca.Replace(ctx, lo, co)
		} else {
			info, err = localca.Create(ctx, lo, co)
		}
		return err
	})
	return info, err
}

// ReadCA loads and checks the local CA without a running server.
func ReadCA(ctx context.Context, env Env, dataDir string, cfg *config.Config) (localca.Info, error) {
	var info localca.Info
	err := CAOffline(ctx, env, dataDir, cfg, func(lo localca.Options) error {
		ca, err := localca.Load(ctx, lo)
		if err != nil {
			return err
		}
		info = ca.Info()
		return nil
	})
	return info, err
}

// initLocalCA creates the local CA of a new data dir.
func initLocalCA(ctx context.Context, db Stores, root secret.Value, dataDir string, cfg *config.Config) error {
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: root})
	if err != nil {
		return err
	}
	defer v.Close(ctx)
	if _, err := localca.Create(ctx, localCAOptions(v, dataDir, cfg, slog.New(slog.DiscardHandler)), localca.CreateOptions{}); err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	return nil
}
