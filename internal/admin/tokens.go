package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/token"
)

// Tokens is what the admin API needs of the token service.
type Tokens interface {
	Create(ctx context.Context, req token.CreateRequest) (secret.Value, *token.Token, error)
	List(ctx context.Context) ([]*token.Token, error)
	Get(ctx context.Context, id token.ID) (*token.Token, error)
	Revoke(ctx context.Context, id token.ID) error
	Rotate(ctx context.Context, id token.ID, grace time.Duration) (secret.Value, *token.Token, error)
	Freeze(ctx context.Context, id token.ID) error
	Unfreeze(ctx context.Context, id token.ID) error
}

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	Name   string        `json:"name"`
	Policy string        `json:"policy,omitempty"`
	Venues []string      `json:"venues"`
	Scopes []string      `json:"scopes,omitempty"`
	Test   bool          `json:"test,omitempty"`
	CIDRs  []string      `json:"cidrs,omitempty"`
	TTL    time.Duration `json:"ttl_ns,omitempty"`
}

// RotateTokenRequest is the body of POST /v1/tokens/{id}/rotate.
type RotateTokenRequest struct {
	Grace time.Duration `json:"grace_ns"`
}

// TokenInfo is a token's metadata as the admin API returns it.
type TokenInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Policy      string    `json:"policy,omitempty"`
	Venues      []string  `json:"venues"`
	Scopes      []string  `json:"scopes"`
	Test        bool      `json:"test"`
	CIDRs       []string  `json:"cidrs,omitempty"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	LastUsedAt  time.Time `json:"last_used_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	FrozenAt    time.Time `json:"frozen_at,omitzero"`
	GraceUntil  time.Time `json:"grace_until,omitzero"`
	RotatedFrom string    `json:"rotated_from,omitempty"`
	RotatedTo   string    `json:"rotated_to,omitempty"`
}

// MintedToken is the answer of create and rotate: the token itself is
// shown exactly once, here.
type MintedToken struct {
	Token string    `json:"token"`
	Info  TokenInfo `json:"info"`
}

// TokenState summarises a token's state at now.
func TokenState(t *token.Token, now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked"
	case !now.Before(t.ExpiresAt):
		return "expired"
	case !t.GraceUntil.IsZero() && !now.Before(t.GraceUntil):
		return "rotated"
	case !t.FrozenAt.IsZero():
		return "frozen"
	case !t.GraceUntil.IsZero():
		return "grace"
	default:
		return "active"
	}
}

func tokenInfo(t *token.Token, now time.Time) TokenInfo {
	i := TokenInfo{ID: string(t.ID), Name: t.Name, Policy: t.Policy, Venues: t.Venues, Scopes: t.Scopes, Test: t.Test,
		State: TokenState(t, now), CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt,
		RevokedAt: t.RevokedAt, FrozenAt: t.FrozenAt, GraceUntil: t.GraceUntil, RotatedFrom: string(t.RotatedFrom), RotatedTo: string(t.RotatedTo)}
	for _, c := range t.CIDRs {
		i.CIDRs = append(i.CIDRs, c.String())
	}
	return i
}

// TokenRoutes registers the token endpoints on mux.
func TokenRoutes(mux *http.ServeMux, tokens Tokens, log interface {
	Warn(msg string, args ...any)
}) {
	fail := func(w http.ResponseWriter, err error) {
		status, code := http.StatusInternalServerError, "internal"
		switch {
		case errors.Is(err, token.ErrNotFound):
			status, code = http.StatusNotFound, "not_found"
		case errors.Is(err, token.ErrInvalid):
			status, code = http.StatusBadRequest, "invalid"
		case errors.Is(err, token.ErrRotated):
			status, code = http.StatusConflict, "rotated"
		}
		if status == http.StatusInternalServerError {
			log.Warn("admin: token request failed", "err", err)
		}
		WriteError(w, status, code, err.Error())
	}
	minted := func(w http.ResponseWriter, raw secret.Value, t *token.Token) {
		defer raw.Wipe()
		WriteJSON(w, http.StatusOK, MintedToken{Token: string(raw.Reveal()), Info: tokenInfo(t, time.Now())})
	}
	mux.HandleFunc("POST "+PathTokens, func(w http.ResponseWriter, r *http.Request) {
		var req CreateTokenRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		if !ReadOnlyScopes(req.Scopes) && !RequireMFA(w, r, ActionTokenCreate) {
			return
		}
		cr := token.CreateRequest{Name: req.Name, Policy: req.Policy, Venues: req.Venues, Scopes: req.Scopes, Test: req.Test, TTL: req.TTL}
		for _, c := range req.CIDRs {
			p, err := ParseCIDR(c)
			if err != nil {
				WriteError(w, http.StatusBadRequest, "invalid", err.Error())
				return
			}
			cr.CIDRs = append(cr.CIDRs, p)
		}
		NoteTarget(r, "", describeCreate(req))
		raw, t, err := tokens.Create(r.Context(), cr)
		if err != nil {
			fail(w, err)
			return
		}
		NoteTarget(r, string(t.ID), "")
		minted(w, raw, t)
	})
	mux.HandleFunc("GET "+PathTokens, func(w http.ResponseWriter, r *http.Request) {
		l, err := tokens.List(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		now := time.Now()
		out := make([]TokenInfo, 0, len(l))
		for _, t := range l {
			out = append(out, tokenInfo(t, now))
		}
		WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET "+PathTokens+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, err := tokens.Get(r.Context(), token.ID(r.PathValue("id")))
		if err != nil {
			fail(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, tokenInfo(t, time.Now()))
	})
	for action, fn := range map[string]func(context.Context, token.ID) error{
		"revoke": tokens.Revoke, "freeze": tokens.Freeze, "unfreeze": tokens.Unfreeze,
	} {
		mux.HandleFunc("POST "+PathTokens+"/{id}/"+action, func(w http.ResponseWriter, r *http.Request) {
			id := token.ID(r.PathValue("id"))
			NoteTarget(r, string(id), "")
			if err := fn(r.Context(), id); err != nil {
				fail(w, err)
				return
			}
			t, err := tokens.Get(r.Context(), id)
			if err != nil {
				fail(w, err)
				return
			}
			WriteJSON(w, http.StatusOK, tokenInfo(t, time.Now()))
		})
	}
	mux.HandleFunc("POST "+PathTokens+"/{id}/rotate", func(w http.ResponseWriter, r *http.Request) {
		var req RotateTokenRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		// The successor gets the same scopes: rotating a trading token
		// mints a trading token.
		old, err := tokens.Get(r.Context(), token.ID(r.PathValue("id")))
		if err != nil {
			fail(w, err)
			return
		}
		if !ReadOnlyScopes(old.Scopes) && !RequireMFA(w, r, ActionTokenRotate) {
			return
		}
		NoteTarget(r, r.PathValue("id"), "grace "+req.Grace.String())
		raw, t, err := tokens.Rotate(r.Context(), token.ID(r.PathValue("id")), req.Grace)
		if err != nil {
			fail(w, err)
			return
		}
		NoteTarget(r, "", "successor "+string(t.ID))
		minted(w, raw, t)
	})
}

// describeCreate summarises a token request for the audit record (no
// value in it is secret).
func describeCreate(req CreateTokenRequest) string {
	d := fmt.Sprintf("name %s; venues %s; scopes %s", quote(req.Name), quote(strings.Join(req.Venues, ",")), quote(strings.Join(req.Scopes, ",")))
	if req.Policy != "" {
		d += "; policy " + quote(req.Policy)
	}
	if req.Test {
		d += "; test"
	}
	if len(req.CIDRs) > 0 {
		d += "; cidrs " + quote(strings.Join(req.CIDRs, ","))
	}
	if req.TTL > 0 {
		d += "; ttl " + req.TTL.String()
	}
	return d
}

// ParseCIDR parses a token's source restriction: a CIDR prefix or a bare
// address (a /32 or /128). The CLI checks its flags with it too.
func ParseCIDR(c string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(c)
	if err != nil {
		a, aerr := netip.ParseAddr(c)
		if aerr != nil {
			return netip.Prefix{}, errors.New("invalid CIDR " + strconvQuote(c))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return p.Masked(), nil
}

func strconvQuote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return `"` + url.PathEscape(s) + `"`
}

// CreateToken mints a token.
func (c *Client) CreateToken(ctx context.Context, req CreateTokenRequest) (MintedToken, error) {
	var m MintedToken
	return m, c.Do(ctx, http.MethodPost, PathTokens, req, &m)
}

// ListTokens lists token metadata.
func (c *Client) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	var l []TokenInfo
	return l, c.Do(ctx, http.MethodGet, PathTokens, nil, &l)
}

// ShowToken shows one token's metadata.
func (c *Client) ShowToken(ctx context.Context, id string) (TokenInfo, error) {
	var i TokenInfo
	return i, c.Do(ctx, http.MethodGet, PathTokens+"/"+url.PathEscape(id), nil, &i)
}

// TokenAction runs revoke, freeze or unfreeze.
func (c *Client) TokenAction(ctx context.Context, id, action string) (TokenInfo, error) {
	var i TokenInfo
	return i, c.Do(ctx, http.MethodPost, PathTokens+"/"+url.PathEscape(id)+"/"+action, struct{}{}, &i)
}

// RotateToken mints a successor; the old token stays valid for grace.
func (c *Client) RotateToken(ctx context.Context, id string, grace time.Duration) (MintedToken, error) {
	var m MintedToken
	return m, c.Do(ctx, http.MethodPost, PathTokens+"/"+url.PathEscape(id)+"/rotate", RotateTokenRequest{Grace: grace}, &m)
}
