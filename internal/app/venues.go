package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/session"
	"github.com/keystile/keystile/internal/sign"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/vault"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/betfair"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/bybit"
	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/dmarket"
	"github.com/keystile/keystile/internal/venue/generic"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/okx"
	"github.com/keystile/keystile/internal/venue/stake"
	"github.com/keystile/keystile/internal/venue/stapi"
)

// credentialsOf binds a vault credential name to venue.Credentials.
func credentialsOf(v *vault.Vault, name string) venue.Credentials {
	return func(ctx context.Context, fn func(venue.Credential) error) error {
		return v.WithCredential(ctx, name, func(c *vault.Credential) error { return fn(c) })
	}
}

// The vault's opened credentials keep derived keys (venue.SignEd25519
// expands an Ed25519 key once per credential version).
var (
	_ venue.Credential = (*vault.Credential)(nil)
	_ venue.Deriver    = (*vault.Credential)(nil)
)

func hostOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid URL %q", raw)
	}
	return u.Host, nil
}

// transportFor builds the upstream transport of a venue: its URLs' hosts
// and the extra hosts are the only ones it can reach.
func transportFor(id string, vc config.Venue, log *slog.Logger, client *tls.Certificate) (*upstream.Transport, error) {
	var hosts []string
	for _, raw := range []string{vc.BaseURL, vc.TestBaseURL, vc.IdentityURL} {
		if raw == "" {
			continue
		}
		h, err := hostOf(raw)
		if err != nil {
			return nil, fmt.Errorf("venue %s: %w", id, err)
		}
		hosts = append(hosts, h)
		hosts = append(hosts, siblingHosts(vc.Type, h)...)
	}
	if vc.Auth != nil && vc.Auth.OAuth2.TokenURL != "" {
		h, err := hostOf(vc.Auth.OAuth2.TokenURL)
		if err != nil {
			return nil, fmt.Errorf("venue %s: %w", id, err)
		}
		hosts = append(hosts, h)
	}
	hosts = append(hosts, vc.Hosts...)
	var minTLS uint16 = tls.VersionTLS12
	if vc.TLS.MinVersion == "1.3" {
		minTLS = tls.VersionTLS13
	}
	t, err := upstream.New(upstream.Options{
		Hosts: hosts, AllowPlainHTTPLoopback: vc.Sandbox, MinTLSVersion: minTLS, CAFile: vc.TLS.CAFile,
		ServerName: vc.TLS.ServerName, ClientCertificate: client,
		Connect: vc.Timeouts.Connect, TLSHandshake: vc.Timeouts.TLSHandshake,
		ResponseHeader: vc.Timeouts.ResponseHeader, Total: vc.Timeouts.Total, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("venue %s: %w", id, err)
	}
	return t, nil
}

// saveRefreshToken stores a rotated OAuth refresh token as a new version of
// the credential, keeping its other fields.
func saveRefreshToken(v *vault.Vault, name string) func(ctx context.Context, tok secret.Value) error {
	return func(ctx context.Context, tok secret.Value) error {
		fields := map[string]secret.Value{}
		err := v.WithCredential(ctx, name, func(c *vault.Credential) error {
			for k, val := range c.Fields() {
				fields[k] = val.Clone()
			}
			return nil
		})
		if err != nil {
			return err
		}
		fields["refresh_token"] = tok.Clone()
		_, err = v.Set(ctx, name, fields, vault.SetOptions{MustExist: true})
		return err
	}
}

// BuildVenues builds the gateway's venues from the configuration. The
// returned closers log sessions out on shutdown.
func BuildVenues(cfg *config.Config, v *vault.Vault, db Stores, log *slog.Logger) ([]gateway.Venue, []venue.Closer, error) {
	var out []gateway.Venue
	var closers []venue.Closer
	for _, id := range sortedVenueIDs(cfg) {
		b, err := buildVenue(id, cfg.Venues[id], v, db, log)
		if err != nil {
			for _, c := range closers {
				_ = c.Close(context.Background())
			}
			return nil, nil, err
		}
		out = append(out, b.gv)
		if b.closer != nil {
			closers = append(closers, b.closer)
		}
	}
	return out, closers, nil
}

func sortedVenueIDs(cfg *config.Config) []string {
	ids := make([]string, 0, len(cfg.Venues))
	for id := range cfg.Venues {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// builtVenue is one venue built from its configuration entry.
type builtVenue struct {
	cfg    config.Venue
	gv     gateway.Venue
	closer venue.Closer // nil unless the venue holds a session to log out
}

// buildVenue builds one venue. On error nothing it opened stays open.
func buildVenue(id string, vc config.Venue, v *vault.Vault, db Stores, log *slog.Logger) (b builtVenue, err error) {
	b.cfg = vc
	fail := func(err error) (builtVenue, error) {
		if b.closer != nil {
			_ = b.closer.Close(context.Background())
		}
		return builtVenue{}, err
	}
	vlog := log.With("venue", id)
	tr, err := transportFor(id, vc, vlog, nil)
	if err != nil {
		return fail(err)
	}
	creds := credentialsOf(v, vc.Credential)
	var impl venue.Venue
	switch vc.Type {
	case config.TypeDMarket:
		impl, err = dmarket.New(dmarket.Options{Credentials: creds})
	case config.TypeStake:
		impl, err = stake.New(stake.Options{Credentials: creds})
	case config.TypeBetfair:
		identity := vc.IdentityURL
		bo := betfair.Options{Credentials: creds, Login: vc.Login, IdentityURL: identity, Transport: tr,
			CertTransport: func(cert *tls.Certificate) (*http.Client, error) {
				ct, err := transportFor(id, vc, vlog, cert)
				if err != nil {
					return nil, err
				}
				return ct.Client(), nil
			},
			Session: func(o *session.BetfairOptions) { o.Logger = vlog },
		}
		var bf *betfair.Venue
		bf, err = betfair.New(bo)
		if err == nil {
			b.closer = bf
			impl = bf
		}
	case config.TypeSTAPI:
		so := stapi.Options{Credentials: creds}
		if vc.Auth != nil && vc.Auth.Scheme == config.SchemeOAuth2 {
			so.OAuth, err = newOAuth(vc, v, tr, creds, vlog)
		}
		if err == nil {
			impl, err = stapi.New(so)
		}
	case config.TypeGeneric:
		impl, err = newGeneric(vc, v, tr, creds, vlog)
	case config.TypeBinance:
		impl, err = binance.New(binance.Options{Credentials: creds, HTTPClient: tr.Client(), BaseURL: vc.BaseURL, Logger: vlog})
	case config.TypeOKX:
		impl, err = okx.New(okx.Options{Credentials: creds})
	case config.TypeBybit:
		impl, err = bybit.New(bybit.Options{Credentials: creds})
	case config.TypeCoinbase:
		impl, err = coinbase.New(coinbase.Options{Credentials: creds})
	case config.TypeKraken:
		ko := kraken.Options{Credentials: creds, Tier: vc.Tier, Logger: vlog}
		if db != nil {
			ko.Nonces = db.Nonces()
		}
		impl, err = kraken.New(ko)
	default:
		err = fmt.Errorf("unknown venue type %q", vc.Type)
	}
	if err != nil {
		return fail(fmt.Errorf("venue %s: %w", id, err))
	}
	gv := gateway.Venue{ID: id, Impl: impl, Retry: upstream.RetryPolicy{
		MaxAttempts: vc.Retry.MaxAttempts, InitialBackoff: vc.Retry.InitialBackoff,
		MaxBackoff: vc.Retry.MaxBackoff, MaxRetryAfter: vc.Retry.MaxRetryAfter, Logger: vlog,
	}}
	base, err := url.Parse(vc.BaseURL)
	if err != nil {
		return fail(fmt.Errorf("venue %s: base_url: %w", id, err))
	}
	// A sandbox venue's base URL is a test endpoint: only kst_test_
	// tokens reach it.
	if vc.Sandbox {
		gv.Test = &gateway.Endpoint{BaseURL: base, Transport: tr}
	} else {
		gv.Live = &gateway.Endpoint{BaseURL: base, Transport: tr}
		if vc.TestBaseURL != "" {
			tu, err := url.Parse(vc.TestBaseURL)
			if err != nil {
				return fail(fmt.Errorf("venue %s: test_base_url: %w", id, err))
			}
			gv.Test = &gateway.Endpoint{BaseURL: tu, Transport: tr}
		}
	}
	b.gv = gv
	return b, nil
}

func newOAuth(vc config.Venue, v *vault.Vault, tr *upstream.Transport, creds venue.Credentials, log *slog.Logger) (*session.OAuth, error) {
	a := vc.Auth.OAuth2
	style := session.AuthBasic
	if a.ClientAuth == "body" {
		style = session.AuthPost
	}
	return session.NewOAuth(session.OAuthOptions{
		TokenURL:         a.TokenURL,
		Credential:       venue.FieldMap(creds, "client_id", "client_secret", "refresh_token", "access_token"),
		Scopes:           a.Scopes,
		AuthStyle:        style,
		HTTPClient:       tr.Client(),
		SaveRefreshToken: saveRefreshToken(v, vc.Credential),
		Logger:           log,
	})
}

func newGeneric(vc config.Venue, v *vault.Vault, tr *upstream.Transport, creds venue.Credentials, log *slog.Logger) (venue.Venue, error) {
	a := vc.Auth
	if a == nil {
		return nil, errors.New("generic venue without auth")
	}
	table := make(venue.Table, 0, len(vc.Operations))
	for _, op := range vc.Operations {
		table = append(table, venue.Route{Method: strings.ToUpper(op.Method), Path: op.Path, Op: op.Op})
	}
	o := generic.Options{
		Credentials: creds, Operations: table, Scheme: a.Scheme, KeyField: a.KeyField, SecretField: a.SecretField,
		Header: a.Header, QueryParam: a.QueryParam,
		HMAC: sign.HMAC{Template: a.HMAC.Template, Algorithm: a.HMAC.Algorithm, Encoding: a.HMAC.Encoding,
			KeyEncoding: a.HMAC.KeyEncoding, TimestampFormat: a.HMAC.TimestampFormat, KeyHeader: a.HMAC.KeyHeader,
			TimestampHeader: a.HMAC.TimestampHeader, SignatureHeader: a.HMAC.SignatureHeader, NonceHeader: a.HMAC.NonceHeader,
			SignatureQueryParam: a.HMAC.SignatureQueryParam, SignaturePrefix: a.HMAC.SignaturePrefix},
		RFC9421: sign.MessageSigner{Label: a.RFC9421.Label, Components: a.RFC9421.Components, Algorithm: a.RFC9421.Alg,
			KeyID: a.RFC9421.KeyID, IncludeAlg: true},
		SigV4: sign.SigV4{Region: a.SigV4.Region, Service: a.SigV4.Service},
	}
	if a.Scheme == config.SchemeOAuth2 {
		oa, err := newOAuth(vc, v, tr, creds, log)
		if err != nil {
			return nil, err
		}
		o.OAuth = oa
	}
	return generic.New(o)
}
