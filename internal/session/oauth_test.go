package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

const (
	canaryClientID     = "client id/ä+1"
	canaryClientSecret = "canary-secret p@ss:w%rd"
	canaryRefresh      = "canary-refresh-0"
)

// tokenServer is an OAuth 2.0 token endpoint with refresh-token rotation.
type tokenServer struct {
	t         *testing.T
	requests  atomic.Int32
	expiresIn int
	basic     bool // expect HTTP Basic client auth, else client_secret_post
	failNext  atomic.Bool

	mu      sync.Mutex
	refresh string // the one valid refresh token
	n       int
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	fail := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		fail(400, "invalid_request", "method or content type")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(400, "invalid_request", "form")
		return
	}
	var id, sec string
	if s.basic {
		u, p, ok := r.BasicAuth()
		if !ok || r.PostForm.Has("client_secret") {
			fail(401, "invalid_client", "basic auth expected")
			return
		}
		id, _ = url.QueryUnescape(u)
		sec, _ = url.QueryUnescape(p)
	} else {
		id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != canaryClientID || sec != canaryClientSecret {
		// A careless server echoing what it got.
		fail(401, "invalid_client", "bad client secret "+sec)
		return
	}
	if s.failNext.Swap(false) {
		fail(400, "temporarily_unavailable", "try later")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	resp := map[string]any{"access_token": fmt.Sprintf("AT-%d", s.n), "token_type": "bearer", "expires_in": s.expiresIn}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		resp["scope"] = r.PostForm.Get("scope")
	case "refresh_token":
		if r.PostForm.Get("refresh_token") != s.refresh {
			fail(400, "invalid_grant", "refresh token "+r.PostForm.Get("refresh_token")+" revoked")
			return
		}
		s.refresh = fmt.Sprintf("canary-refresh-%d", s.n)
		resp["refresh_token"] = s.refresh
	default:
		fail(400, "unsupported_grant_type", "")
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(resp)
}

func oauthCred(withRefresh bool, secretValue string) CredentialFunc {
	return func(ctx context.Context, fn func(map[string]secret.Value) error) error {
		f := map[string]secret.Value{
			FieldClientID:     secret.FromString(canaryClientID),
			FieldClientSecret: secret.FromString(secretValue),
		}
		if withRefresh {
			f[FieldRefreshToken] = secret.FromString(canaryRefresh)
		}
		return fn(f)
	}
}

// fakeClock is an injectable clock for early-refresh tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestBasicAuthKAT(t *testing.T) {
	raw, err := os.ReadFile("testdata/oauth2_client_basic.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ ClientID, ClientSecret, Authorization string }
	if err := json.Unmarshal(raw, &struct {
		ClientID      *string `json:"client_id"`
		ClientSecret  *string `json:"client_secret"`
		Authorization *string `json:"authorization"`
	}{&v.ClientID, &v.ClientSecret, &v.Authorization}); err != nil {
		t.Fatal(err)
	}
	got := basicAuth(secret.FromString(v.ClientID), secret.FromString(v.ClientSecret))
	if string(got) != v.Authorization {
		t.Fatalf("basicAuth = %q, want %q", got, v.Authorization)
	}
}

func TestOAuthClientCredentials(t *testing.T) {
	for _, tc := range []struct {
		name  string
		style AuthStyle
	}{
		{"basic", AuthBasic},
		{"client_secret_post", AuthPost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := &tokenServer{t: t, expiresIn: 3600, basic: tc.style == AuthBasic}
			srv := httptest.NewServer(ts)
			defer srv.Close()
			o, err := NewOAuth(OAuthOptions{TokenURL: srv.URL, Credential: oauthCred(false, canaryClientSecret),
				Scopes: []string{"read", "trade"}, AuthStyle: tc.style, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					tok, err := o.Token(context.Background())
					if err != nil || string(tok.Value.Reveal()) != "AT-1" {
						t.Errorf("Token = %v, %v", tok.Value.Reveal(), err)
					}
				})
			}
			wg.Wait()
			if got := ts.requests.Load(); got != 1 {
				t.Fatalf("token requests = %d, want 1", got)
			}
			tok, _ := o.Token(context.Background())
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			o.Apply(req, tok)
			if req.Header.Get("Authorization") != "Bearer AT-1" {
				t.Fatalf("Authorization = %q", req.Header.Get("Authorization"))
			}
			o.Invalidate(tok)
			o.Invalidate(tok) // a second, stale invalidation is a no-op
			tok2, err := o.Token(context.Background())
			if err != nil || string(tok2.Value.Reveal()) != "AT-2" {
				t.Fatalf("after Invalidate: %v, %v", tok2.Value.Reveal(), err)
			}
			o.Invalidate(tok) // stale: must not drop AT-2
			if tok3, _ := o.Token(context.Background()); !tok3.Value.Equal(tok2.Value) || ts.requests.Load() != 2 {
				t.Fatalf("stale Invalidate dropped the newer token")
			}
		})
	}
}

func TestOAuthErrorNoSecrets(t *testing.T) {
	ts := &tokenServer{t: t, expiresIn: 3600, basic: true}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	var logs bytes.Buffer
	o, err := NewOAuth(OAuthOptions{TokenURL: srv.URL, Credential: oauthCred(false, canaryClientSecret+"-wrong"),
		HTTPClient: srv.Client(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.Token(context.Background())
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_client" || oe.Status != 401 {
		t.Fatalf("err = %v, want invalid_client", err)
	}
	assertNoCanary(t, "error", fmt.Sprintf("%v %+v", err, err))
	assertNoCanary(t, "log", logs.String())
}

func TestOAuthRefreshEarlyWithRotation(t *testing.T) {
	ts := &tokenServer{t: t, expiresIn: 3600, basic: true, refresh: canaryRefresh}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var saved []string
	o, err := NewOAuth(OAuthOptions{TokenURL: srv.URL, Credential: oauthCred(true, canaryClientSecret),
		HTTPClient: srv.Client(), Now: clk.Now,
		SaveRefreshToken: func(_ context.Context, v secret.Value) error {
			mu.Lock()
			defer mu.Unlock()
			saved = append(saved, string(v.Reveal()))
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := o.Token(context.Background())
	if err != nil || string(tok.Value.Reveal()) != "AT-1" {
		t.Fatalf("first Token: %v %v", tok.Value.Reveal(), err)
	}
	if !tok.Expiry.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("Expiry = %v", tok.Expiry)
	}
	clk.Add(2000 * time.Second) // 1600 s left > 20% of 3600 s: no refresh
	if tok, _ = o.Token(context.Background()); string(tok.Value.Reveal()) != "AT-1" || ts.requests.Load() != 1 {
		t.Fatalf("refreshed too early")
	}
	clk.Add(900 * time.Second) // 700 s left < 720 s: refresh, once, with the rotated token
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if tok, err := o.Token(context.Background()); err != nil || string(tok.Value.Reveal()) != "AT-2" {
				t.Errorf("Token = %s, %v", tok.Value.Reveal(), err)
			}
		})
	}
	wg.Wait()
	if got := ts.requests.Load(); got != 2 {
		t.Fatalf("token requests = %d, want 2", got)
	}
	mu.Lock()
	got := fmt.Sprint(saved)
	mu.Unlock()
	if got != "[canary-refresh-1 canary-refresh-2]" {
		t.Fatalf("saved refresh tokens = %s", got)
	}

	// A failing early refresh keeps the still-valid token.
	clk.Add(3000 * time.Second)
	ts.failNext.Store(true)
	if tok, err := o.Token(context.Background()); err != nil || string(tok.Value.Reveal()) != "AT-2" {
		t.Fatalf("failed early refresh: %s, %v; want AT-2 kept", tok.Value.Reveal(), err)
	}
	// Once expired, the failure is reported... and the next attempt works.
	clk.Add(700 * time.Second)
	ts.failNext.Store(true)
	var oe *OAuthError
	if _, err := o.Token(context.Background()); !errors.As(err, &oe) || oe.Code != "temporarily_unavailable" {
		t.Fatalf("expired + failing refresh: %v", err)
	}
	if tok, err := o.Token(context.Background()); err != nil || string(tok.Value.Reveal()) != "AT-3" {
		t.Fatalf("recovery: %s %v", tok.Value.Reveal(), err)
	}
}

func TestParseTokenResponse(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const js = "application/json"
	for _, tc := range []struct {
		name    string
		status  int
		ct      string
		body    string
		wantErr string // substring; "" = success
		code    string // OAuthError code
	}{
		{"minimal", 200, js, `{"access_token":"a","token_type":"Bearer"}`, "", ""},
		{"full", 200, js + "; charset=utf-8", `{"access_token":"a","token_type":"bearer","expires_in":60,"refresh_token":"r","scope":"x y","extra":{}}`, "", ""},
		{"no access token", 200, js, `{"token_type":"Bearer"}`, "access_token", ""},
		{"empty access token", 200, js, `{"access_token":"","token_type":"Bearer"}`, "access_token", ""},
		{"numeric access token", 200, js, `{"access_token":1,"token_type":"Bearer"}`, "access_token", ""},
		{"no token type", 200, js, `{"access_token":"a"}`, "token_type", ""},
		{"mac token type", 200, js, `{"access_token":"a","token_type":"mac"}`, "token_type", ""},
		{"string expires_in", 200, js, `{"access_token":"a","token_type":"Bearer","expires_in":"60"}`, "expires_in", ""},
		{"fractional expires_in", 200, js, `{"access_token":"a","token_type":"Bearer","expires_in":1.5}`, "expires_in", ""},
		{"negative expires_in", 200, js, `{"access_token":"a","token_type":"Bearer","expires_in":-1}`, "expires_in", ""},
		{"huge expires_in", 200, js, `{"access_token":"a","token_type":"Bearer","expires_in":1e300}`, "expires_in", ""},
		{"numeric refresh token", 200, js, `{"access_token":"a","token_type":"Bearer","refresh_token":5}`, "refresh_token", ""},
		{"form encoded", 200, "application/x-www-form-urlencoded", `access_token=a&token_type=bearer`, "content type", ""},
		{"array", 200, js, `[]`, "json object", ""},
		{"error invalid_grant", 400, js, `{"error":"invalid_grant","error_description":"expired"}`, "invalid_grant", "invalid_grant"},
		{"error bad code chars", 400, js, `{"error":"bad\"code"}`, "http status 400", ""},
		{"server error", 500, "text/html", `<html>`, "http status 500", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks, err := parseTokenResponse(tc.status, tc.ct, []byte(tc.body), now)
			if tc.wantErr == "" {
				if err != nil || string(toks.AccessToken.Reveal()) != "a" || toks.TokenType != "Bearer" {
					t.Fatalf("got %+v, %v", toks, err)
				}
				return
			}
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
			var oe *OAuthError
			if tc.code != "" && (!errors.As(err, &oe) || oe.Code != tc.code) {
				t.Fatalf("err = %#v, want OAuthError %s", err, tc.code)
			}
		})
	}
}

func TestNewOAuthValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  OAuthOptions
	}{
		{"no token url", OAuthOptions{Credential: oauthCred(false, "x")}},
		{"no credential", OAuthOptions{TokenURL: "https://x"}},
		{"bad fraction", OAuthOptions{TokenURL: "https://x", Credential: oauthCred(false, "x"), RefreshFraction: 0.9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewOAuth(tc.opt); err == nil {
				t.Fatal("want error")
			}
		})
	}
}
