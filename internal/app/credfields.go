package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/session"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/bybit"
	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/dmarket"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/okx"
	"github.com/keystile/keystile/internal/venue/stake"
)

// oauthFields are what an OAuth 2.0 token source reads: a client id, and a
// client secret (client credentials) or a refresh token (stored by
// `keystile oauth login`), or an initial access token.
var oauthFields = venue.FieldSpec{Required: []string{session.FieldClientID},
	Optional: []string{session.FieldClientSecret, session.FieldRefreshToken, session.FieldAccessToken}}

// CredentialFields declares the fields a configured venue reads from its
// credential, for its type and (betfair, stapi, generic) its configuration.
func CredentialFields(vc config.Venue) venue.FieldSpec {
	switch vc.Type {
	case config.TypeBinance:
		return venue.FieldSpec{Required: []string{binance.FieldAPIKey}, OneOf: [][]string{{binance.FieldSecret, binance.FieldPrivateKey}}}
	case config.TypeKraken:
		return venue.FieldSpec{Required: []string{kraken.FieldAPIKey, kraken.FieldSecret}}
	case config.TypeOKX:
		return venue.FieldSpec{Required: []string{okx.FieldAPIKey, okx.FieldSecret, okx.FieldPassphrase}}
	case config.TypeBybit:
		return venue.FieldSpec{Required: []string{bybit.FieldAPIKey, bybit.FieldSecret}}
	case config.TypeCoinbase:
		return venue.FieldSpec{Required: []string{coinbase.FieldKeyName, coinbase.FieldPrivateKey}}
	case config.TypeDMarket:
		return venue.FieldSpec{Required: []string{dmarket.FieldPublicKey, dmarket.FieldSecretKey}}
	case config.TypeStake:
		return venue.FieldSpec{Required: []string{stake.FieldToken}}
	case config.TypeBetfair:
		s := venue.FieldSpec{Required: []string{session.FieldAppKey, session.FieldUsername, session.FieldPassword}}
		cert := []string{session.FieldClientCert, session.FieldClientKey}
		if vc.Login == "login" {
			s.Optional = cert
		} else {
			s.Required = append(s.Required, cert...)
		}
		return s
	case config.TypeSTAPI:
		if vc.Auth != nil && vc.Auth.Scheme == config.SchemeOAuth2 {
			// The API key may stay next to the OAuth client (to switch
			// back); with oauth2 it is not sent.
			s := oauthFields
			s.Optional = append(slices.Clone(s.Optional), "api_key")
			return s
		}
		// The OAuth client may be stored ahead of switching to oauth2.
		return venue.FieldSpec{Required: []string{"api_key"}, Optional: slices.Concat([]string{session.FieldClientID}, oauthFields.Optional)}
	case config.TypeGeneric:
		if vc.Auth == nil {
			return venue.FieldSpec{}
		}
		a := vc.Auth
		switch a.Scheme {
		case config.SchemeOAuth2:
			return oauthFields
		case config.SchemeHeader, config.SchemeBearer, config.SchemeQuery:
			return venue.FieldSpec{Required: []string{a.KeyField}}
		case config.SchemeRFC9421, config.SchemeEd25519:
			// The key (a key id or key header) is optional for these two.
			return venue.FieldSpec{Required: []string{a.SecretField}, Optional: []string{a.KeyField}}
		case config.SchemeSigV4:
			return venue.FieldSpec{Required: []string{a.KeyField, a.SecretField}, Optional: []string{"session_token"}}
		default: // basic, hmac
			return venue.FieldSpec{Required: []string{a.KeyField, a.SecretField}}
		}
	}
	return venue.FieldSpec{}
}

// credentialGuard checks the admin API's secret writes and removals against
// the configuration the server runs with (admin.CredentialGuard).
type credentialGuard struct {
	cfg    func() *config.Config // the configuration in force (reloads included)
	tokens *token.Service
}

// users lists the configured venues that sign with credential name, sorted.
func (g credentialGuard) users(name string) []string {
	var ids []string
	for id, vc := range g.cfg().Venues {
		if vc.Credential == name {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// CheckFields implements admin.CredentialGuard: the fields must fit every
// venue that uses the credential. A credential no venue uses is not
// checked (its type is not known yet).
func (g credentialGuard) CheckFields(name string, fields []string) error {
	if name == localca.CredentialName {
		return fmt.Errorf("credential %q holds keystile's local CA key: use `keystile ca rotate` to replace it", name)
	}
	var problems []string
	for _, id := range g.users(name) {
		vc := g.cfg().Venues[id]
		spec := CredentialFields(vc)
		known := spec.Known()
		if len(known) == 0 {
			continue
		}
		missing, unknown := spec.Check(fields)
		if len(missing) == 0 && len(unknown) == 0 {
			continue
		}
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, "missing "+strings.Join(missing, ", "))
		}
		if len(unknown) > 0 {
			u := make([]string, 0, len(unknown))
			for _, f := range unknown {
				if s := config.Suggest(f, known); s != "" {
					f += fmt.Sprintf(" (did you mean %s?)", s)
				}
				u = append(u, f)
			}
			parts = append(parts, "unknown "+strings.Join(u, ", "))
		}
		problems = append(problems, fmt.Sprintf("venue %s (type %s) reads %s: %s", id, vc.Type, describe(spec), strings.Join(parts, "; ")))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("credential %q does not fit: %s", name, strings.Join(problems, "; "))
}

// describe lists a spec's fields for an error message.
func describe(s venue.FieldSpec) string {
	out := slices.Clone(s.Required)
	for _, g := range s.OneOf {
		out = append(out, venue.Alternatives(g))
	}
	for _, o := range s.Optional {
		out = append(out, "["+o+"]")
	}
	return strings.Join(out, ", ")
}

// InUse implements admin.CredentialGuard: the venues that sign with the
// credential, and how many live tokens reach them.
func (g credentialGuard) InUse(ctx context.Context, name string) (string, error) {
	if name == localca.CredentialName {
		return "holds the local CA's key (forward proxy and gateway TLS certificates)", nil
	}
	ids := g.users(name)
	if len(ids) == 0 {
		return "", nil
	}
	live := 0
	if g.tokens != nil {
		l, err := g.tokens.List(ctx)
		if err != nil {
			return "", err
		}
		now := time.Now()
		for _, t := range l {
			switch admin.TokenState(t, now) {
			case "revoked", "expired", "rotated":
				continue
			}
			if slices.ContainsFunc(t.Venues, func(v string) bool { return slices.Contains(ids, v) }) {
				live++
			}
		}
	}
	noun := "tokens reach"
	if live == 1 {
		noun = "token reaches"
	}
	return fmt.Sprintf("used by venue %s (%d live %s it)", strings.Join(ids, ", "), live, noun), nil
}

// checkVenues refuses a token for a venue the configuration does not have:
// every request with it would be refused.
func checkVenues(cfg *config.Config, venues []string) error {
	ids := make([]string, 0, len(cfg.Venues))
	for id := range cfg.Venues {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, v := range venues {
		if _, ok := cfg.Venues[v]; ok {
			continue
		}
		if len(ids) == 0 {
			return fmt.Errorf("%w: no venue %q in the configuration (no venues are configured)", token.ErrInvalid, v)
		}
		hint := ""
		if s := config.Suggest(v, ids); s != "" {
			hint = fmt.Sprintf("did you mean %q? ", s)
		}
		return fmt.Errorf("%w: no venue %q in the configuration (%svenues: %s)", token.ErrInvalid, v, hint, strings.Join(ids, ", "))
	}
	return nil
}
