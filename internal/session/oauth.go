package session

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// OAuth credential field names.
const (
	FieldClientID     = "client_id"
	FieldClientSecret = "client_secret"
	FieldRefreshToken = "refresh_token"
	FieldAccessToken  = "access_token"
)

// AuthStyle is how the client authenticates to the token endpoint.
type AuthStyle int

const (
	// AuthBasic sends client_id and client_secret in HTTP Basic, each
	// form-urlencoded first (RFC 6749 §2.3.1). The default.
	AuthBasic AuthStyle = iota
	// AuthPost sends them as client_id / client_secret body parameters
	// (client_secret_post).
	AuthPost
)

// Tokens is a parsed successful token response (RFC 6749 §5.1).
type Tokens struct {
	AccessToken  secret.Value
	TokenType    string
	RefreshToken secret.Value // zero if none was issued
	Expiry       time.Time    // zero if expires_in was absent
	Lifetime     time.Duration
	Scope        string
}

// OAuthError is an error response from a token endpoint (RFC 6749 §5.2)
// or an error redirect from an authorization endpoint (§4.1.2.1). Code is
// the RFC error code (invalid_grant, invalid_client, ...). Description is
// the server's text, restricted to printable ASCII, truncated, and scrubbed
// of the secrets that were sent.
type OAuthError struct {
	Status      int // HTTP status; 0 for an authorization redirect
	Code        string
	Description string
}

func (e *OAuthError) Error() string {
	s := "session: oauth error " + e.Code
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// OAuthOptions configures an OAuth 2.0 token source.
type OAuthOptions struct {
	// TokenURL is the token endpoint. Required.
	TokenURL string
	// Credential gives access to client_id, client_secret and optionally
	// refresh_token and access_token. Required. With a refresh_token the
	// source uses the refresh-token grant, otherwise client credentials.
	// An access_token, if present, is used first (expiry unknown) until
	// invalidated.
	Credential CredentialFunc
	// Scopes are requested with the client-credentials grant.
	Scopes []string
	// AuthStyle selects client authentication; default AuthBasic.
	AuthStyle AuthStyle
	// HTTPClient calls the token endpoint. If nil, a client with a 30 s
	// timeout that follows no redirects.
	HTTPClient *http.Client
	// SaveRefreshToken, if set, is called with each new refresh token the
	// server issues (rotation), so it can be stored. If it fails the error
	// is logged and the new token is kept in memory.
	SaveRefreshToken func(ctx context.Context, refreshToken secret.Value) error
	// RefreshFraction and RefreshMargin set early refresh: a token is
	// replaced once less than max(RefreshFraction × lifetime, RefreshMargin)
	// remains, but never earlier than half its lifetime. Defaults 0.2, 60 s.
	RefreshFraction float64
	RefreshMargin   time.Duration
	// Timeout bounds one token request. If zero, 30 s.
	Timeout time.Duration
	// Logger receives operational messages. Nil discards.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// OAuth is a Source of OAuth 2.0 bearer access tokens.
type OAuth struct {
	opt    OAuthOptions
	client *http.Client
	fl     *flight
	log    *slog.Logger
	now    func() time.Time

	mu          sync.Mutex
	rotated     secret.Value // latest refresh token issued, if any
	usedInitial bool         // the credential's access_token was tried
}

// NewOAuth validates opt. No request is made until the first Token call.
func NewOAuth(opt OAuthOptions) (*OAuth, error) {
	if opt.TokenURL == "" {
		return nil, errors.New("session: oauth: TokenURL is required")
	}
	if opt.Credential == nil {
		return nil, errors.New("session: oauth: Credential is required")
	}
	if opt.AuthStyle != AuthBasic && opt.AuthStyle != AuthPost {
		return nil, errors.New("session: oauth: unknown AuthStyle")
	}
	if opt.RefreshFraction == 0 {
		opt.RefreshFraction = 0.2
	}
	if opt.RefreshMargin == 0 {
		opt.RefreshMargin = time.Minute
	}
	if opt.RefreshFraction < 0 || opt.RefreshFraction > 0.5 || opt.RefreshMargin < 0 {
		return nil, errors.New("session: oauth: RefreshFraction must be in (0, 0.5] and RefreshMargin positive")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	o := &OAuth{opt: opt, client: opt.HTTPClient, log: discardLogger(opt.Logger), now: clockOrNow(opt.Now)}
	if o.client == nil {
		o.client = defaultClient()
	}
	o.fl = &flight{now: o.now, timeout: opt.Timeout, fetch: o.fetch, refreshAt: o.refreshAt, log: o.log}
	return o, nil
}

// Token returns a valid access token, fetching or refreshing first when
// needed (one request at a time).
func (o *OAuth) Token(ctx context.Context) (Token, error) { return o.fl.token(ctx) }

// Invalidate marks t stale, e.g. after a 401 from the API.
func (o *OAuth) Invalidate(t Token) { o.fl.invalidate(t) }

// Apply sets the Authorization header of r to the bearer token t.
func (o *OAuth) Apply(r *http.Request, t Token) {
	r.Header.Set("Authorization", "Bearer "+string(t.Value.Reveal()))
}

// refreshAt is when a token with a known lifetime should be replaced.
func (o *OAuth) refreshAt(t Token) time.Time {
	life := t.lifetime
	if t.Expiry.IsZero() || life <= 0 {
		return time.Time{}
	}
	margin := max(time.Duration(o.opt.RefreshFraction*float64(life)), o.opt.RefreshMargin)
	margin = min(margin, life/2)
	return t.Expiry.Add(-margin)
}

func (o *OAuth) fetch(ctx context.Context) (Token, error) {
	var out Token
	err := o.opt.Credential(ctx, func(f map[string]secret.Value) error {
		o.mu.Lock()
		useInitial := !o.usedInitial && !f[FieldAccessToken].IsZero()
		o.usedInitial = true
		refresh := o.rotated
		o.mu.Unlock()
		if useInitial {
			out = Token{Value: f[FieldAccessToken].Clone()}
			return nil
		}
		if refresh.IsZero() {
			refresh = f[FieldRefreshToken]
		}
		if f[FieldClientID].IsZero() {
			return &MissingFieldError{Field: FieldClientID}
		}
		var params []formField
		if !refresh.IsZero() {
			params = []formField{{"grant_type", []byte("refresh_token")}, {"refresh_token", refresh.Reveal()}}
		} else {
			if f[FieldClientSecret].IsZero() {
				return &MissingFieldError{Field: FieldClientSecret}
			}
			params = []formField{{"grant_type", []byte("client_credentials")}}
			if len(o.opt.Scopes) > 0 {
				params = append(params, formField{"scope", []byte(strings.Join(o.opt.Scopes, " "))})
			}
		}
		toks, err := tokenRequest(ctx, o.client, o.opt.TokenURL, o.opt.AuthStyle,
			f[FieldClientID], f[FieldClientSecret], params, o.now, refresh)
		if err != nil {
			return err
		}
		// Only a refresh grant rotates the refresh token (RFC 6749 §6). A
		// refresh token issued with client credentials (§4.4.3 says it
		// should not be) is ignored: adopting it would make the source
		// depend on it and never fall back to client credentials.
		if !refresh.IsZero() && !toks.RefreshToken.IsZero() && !toks.RefreshToken.Equal(refresh) {
			o.mu.Lock()
			o.rotated = toks.RefreshToken
			o.mu.Unlock()
			if o.opt.SaveRefreshToken != nil {
				if err := o.opt.SaveRefreshToken(ctx, toks.RefreshToken.Clone()); err != nil {
					o.log.Error("session: oauth: saving rotated refresh token failed; kept in memory only", "err", err)
				}
			}
		}
		out = Token{Value: toks.AccessToken, Expiry: toks.Expiry, lifetime: toks.Lifetime}
		return nil
	})
	return out, err
}

// tokenRequest POSTs params to a token endpoint with client
// authentication and parses the answer. scrub lists further secrets sent.
func tokenRequest(ctx context.Context, client *http.Client, tokenURL string, style AuthStyle,
	clientID, clientSecret secret.Value, params []formField, now func() time.Time, scrub ...secret.Value) (Tokens, error) {
	if style == AuthPost || clientSecret.IsZero() {
		params = append(params, formField{"client_id", clientID.Reveal()})
		if !clientSecret.IsZero() {
			params = append(params, formField{"client_secret", clientSecret.Reveal()})
		}
	}
	body := encodeForm(params...)
	defer secret.Wipe(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, bytes.NewReader(body))
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if style == AuthBasic && !clientSecret.IsZero() {
		hdr := basicAuth(clientID, clientSecret)
		req.Header.Set("Authorization", string(hdr))
		secret.Wipe(hdr)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth token request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := readBody(resp.Body)
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth token request: read: %w", err)
	}
	toks, err := parseTokenResponse(resp.StatusCode, resp.Header.Get("Content-Type"), raw, now())
	var oe *OAuthError
	if errors.As(err, &oe) {
		oe.Description = scrubSecrets(oe.Description, append(scrub, clientID, clientSecret)...)
	}
	return toks, err
}

// basicAuth builds "Basic base64(urlenc(id):urlenc(secret))" (RFC 6749
// §2.3.1) in a byte slice the caller wipes.
func basicAuth(id, sec secret.Value) []byte {
	cred := appendFormEscape(nil, id.Reveal())
	cred = append(cred, ':')
	cred = appendFormEscape(cred, sec.Reveal())
	out := make([]byte, len("Basic ")+base64.StdEncoding.EncodedLen(len(cred)))
	copy(out, "Basic ")
	base64.StdEncoding.Encode(out[len("Basic "):], cred)
	secret.Wipe(cred)
	return out
}

// maxLifetime bounds expires_in so that expiry arithmetic cannot overflow.
const maxLifetime = 10 * 365 * 24 * time.Hour

// parseTokenResponse parses a token endpoint answer strictly: a 200 with
// an application/json object holding a non-empty string access_token,
// token_type Bearer (case-insensitive), and optional integer expires_in,
// string refresh_token and string scope; or a 4xx JSON error object with a
// string error code (RFC 6749 §5.1, §5.2). Unknown members are ignored.
func parseTokenResponse(status int, contentType string, body []byte, now time.Time) (Tokens, error) {
	if status != http.StatusOK {
		if status >= 400 && status < 500 {
			if oe := parseOAuthError(body); oe != nil {
				oe.Status = status
				return Tokens{}, oe
			}
		}
		return Tokens{}, &HTTPStatusError{Op: "oauth token request", Status: status}
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return Tokens{}, errors.New("session: oauth token response: content type is not application/json")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return Tokens{}, errors.New("session: oauth token response: not a json object")
	}
	var t Tokens
	access, ok := jsonString(m, "access_token")
	if !ok || access == "" {
		return Tokens{}, errors.New("session: oauth token response: access_token missing or not a string")
	}
	tt, ok := jsonString(m, "token_type")
	if !ok || !strings.EqualFold(tt, "bearer") {
		return Tokens{}, errors.New("session: oauth token response: token_type missing or not bearer")
	}
	t.TokenType = "Bearer"
	if raw, present := m["expires_in"]; present && string(raw) != "null" {
		var n float64
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 || n != math.Trunc(n) ||
			n > maxLifetime.Seconds() {
			return Tokens{}, errors.New("session: oauth token response: expires_in is not a non-negative integer")
		}
		t.Lifetime = time.Duration(n) * time.Second
		t.Expiry = now.Add(t.Lifetime)
	}
	if _, present := m["refresh_token"]; present {
		rt, ok := jsonString(m, "refresh_token")
		if !ok {
			return Tokens{}, errors.New("session: oauth token response: refresh_token is not a string")
		}
		if rt != "" {
			t.RefreshToken = secret.FromString(rt)
		}
	}
	if _, present := m["scope"]; present {
		sc, ok := jsonString(m, "scope")
		if !ok {
			return Tokens{}, errors.New("session: oauth token response: scope is not a string")
		}
		t.Scope = sc
	}
	t.AccessToken = secret.FromString(access)
	return t, nil
}

// jsonString returns m[k] as a string; ok is false if absent, null or not
// a string.
func jsonString(m map[string]json.RawMessage, k string) (string, bool) {
	raw, present := m[k]
	if !present {
		return "", false
	}
	var s *string
	if json.Unmarshal(raw, &s) != nil || s == nil {
		return "", false
	}
	return *s, true
}

func parseOAuthError(body []byte) *OAuthError {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	code, ok := jsonString(m, "error")
	if !ok || !validErrorCode(code) {
		return nil
	}
	desc, _ := jsonString(m, "error_description")
	return &OAuthError{Code: code, Description: cleanText(desc)}
}

// validErrorCode applies RFC 6749 §5.2's character set (%x20-21 / %x23-5B /
// %x5D-7E) and a length bound.
func validErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// cleanText keeps printable ASCII and truncates to 200 bytes.
func cleanText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 200; i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// scrubSecrets replaces every occurrence of each non-empty secret in s.
func scrubSecrets(s string, secrets ...secret.Value) string {
	for _, v := range secrets {
		if v.Len() >= 4 {
			s = strings.ReplaceAll(s, string(v.Reveal()), secret.Redacted)
		}
	}
	return s
}

var _ Source = (*OAuth)(nil)
