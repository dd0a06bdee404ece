package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

func TestPKCEChallengeKAT(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc7636_pkce.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Verifier  string `json:"code_verifier"`
		Challenge string `json:"code_challenge_s256"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if got := PKCEChallengeS256(v.Verifier); got != v.Challenge {
		t.Fatalf("challenge = %s, want %s", got, v.Challenge)
	}
}

// authServer is an authorization server with PKCE (S256 only) that binds
// each code to its redirect_uri and challenge.
type authServer struct {
	t        *testing.T
	tokenReq atomic.Int32
	mu       sync.Mutex
	codes    map[string]authGrant
	n        int
}

type authGrant struct{ redirect, challenge string }

func (s *authServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/authorize":
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != "cli" ||
			q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("state") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		redirect, err := url.Parse(q.Get("redirect_uri"))
		if err != nil || redirect.Scheme != "http" || !strings.HasPrefix(redirect.Host, "127.0.0.1:") {
			http.Error(w, "bad redirect_uri", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.n++
		code := fmt.Sprintf("code-%d", s.n)
		s.codes[code] = authGrant{redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge")}
		s.mu.Unlock()
		rq := redirect.Query()
		rq.Set("code", code)
		rq.Set("state", q.Get("state"))
		redirect.RawQuery = rq.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	case "/token":
		s.tokenReq.Add(1)
		fail := func(code string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":%q}`, code)
		}
		u, p, ok := r.BasicAuth()
		p, _ = url.QueryUnescape(p) // RFC 6749 §2.3.1
		if !ok || u != "cli" || p != canaryClientSecret {
			fail("invalid_client")
			return
		}
		s.mu.Lock()
		g, ok := s.codes[r.PostFormValue("code")]
		delete(s.codes, r.PostFormValue("code")) // single use
		s.mu.Unlock()
		switch {
		case r.PostFormValue("grant_type") != "authorization_code" || !ok:
			fail("invalid_grant")
		case r.PostFormValue("redirect_uri") != g.redirect:
			fail("invalid_grant")
		case PKCEChallengeS256(r.PostFormValue("code_verifier")) != g.challenge:
			fail("invalid_grant")
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"AT-code","token_type":"Bearer","expires_in":600,"refresh_token":"RT-code"}`))
		}
	default:
		http.NotFound(w, r)
	}
}

// browser follows the authorization URL like a browser would, after
// letting tamper rewrite it.
func browser(t *testing.T, tamper func(u *url.URL)) func(string) error {
	return func(raw string) error {
		u, err := url.Parse(raw)
		if err != nil {
			return err
		}
		if tamper != nil {
			tamper(u)
		}
		go func() {
			resp, err := http.Get(u.String())
			if err == nil {
				resp.Body.Close()
			}
		}()
		return nil
	}
}

func authOpts(srv *httptest.Server, open func(string) error) AuthCodeOptions {
	return AuthCodeOptions{
		AuthURL:      srv.URL + "/authorize",
		TokenURL:     srv.URL + "/token",
		ClientID:     "cli",
		ClientSecret: secret.FromString(canaryClientSecret),
		Scopes:       []string{"read"},
		OpenBrowser:  open,
		HTTPClient:   srv.Client(),
	}
}

func TestAuthorizationCodeFlow(t *testing.T) {
	as := &authServer{t: t, codes: map[string]authGrant{}}
	srv := httptest.NewServer(as)
	defer srv.Close()
	setQuery := func(k, v string) func(*url.URL) {
		return func(u *url.URL) { q := u.Query(); q.Set(k, v); u.RawQuery = q.Encode() }
	}
	for _, tc := range []struct {
		name       string
		tamper     func(*url.URL)
		timeout    time.Duration
		check      func(t *testing.T, toks Tokens, err error)
		tokenCalls int32
	}{
		{name: "success", check: func(t *testing.T, toks Tokens, err error) {
			if err != nil || string(toks.AccessToken.Reveal()) != "AT-code" || string(toks.RefreshToken.Reveal()) != "RT-code" {
				t.Fatalf("got %v %v", toks.AccessToken.Reveal(), err)
			}
		}, tokenCalls: 1},
		{name: "tampered state", tamper: setQuery("state", "attacker"), check: func(t *testing.T, _ Tokens, err error) {
			if !errors.Is(err, ErrStateMismatch) {
				t.Fatalf("err = %v, want ErrStateMismatch", err)
			}
		}},
		{name: "different redirect uri", tamper: func(u *url.URL) {
			q := u.Query()
			q.Set("redirect_uri", q.Get("redirect_uri")+"?via=elsewhere")
			u.RawQuery = q.Encode()
		}, check: func(t *testing.T, _ Tokens, err error) {
			var oe *OAuthError
			if !errors.As(err, &oe) || oe.Code != "invalid_grant" {
				t.Fatalf("err = %v, want invalid_grant from the server", err)
			}
		}, tokenCalls: 1},
		{name: "ctx timeout", tamper: func(u *url.URL) { u.Path = "/nowhere" }, timeout: 200 * time.Millisecond,
			check: func(t *testing.T, _ Tokens, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want deadline exceeded", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := as.tokenReq.Load()
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			var redirect string
			open := browser(t, tc.tamper)
			opt := authOpts(srv, func(u string) error {
				pu, _ := url.Parse(u)
				redirect = pu.Query().Get("redirect_uri")
				// A request on another path must not consume the one callback.
				if resp, err := http.Get(strings.Replace(redirect, "/callback", "/other", 1)); err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusNotFound {
						t.Errorf("other path status = %d", resp.StatusCode)
					}
				}
				return open(u)
			})
			toks, err := AuthorizationCodeFlow(ctx, opt)
			tc.check(t, toks, err)
			if err != nil {
				assertNoCanary(t, "error", err.Error())
			}
			if got := as.tokenReq.Load() - before; got != tc.tokenCalls {
				t.Fatalf("token requests = %d, want %d", got, tc.tokenCalls)
			}
			// The listener is gone once the flow returns.
			u, _ := url.Parse(redirect)
			if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
				c.Close()
				t.Fatalf("listener %s still open", u.Host)
			}
		})
	}
}

func TestAuthorizationCodeFlowOneCallback(t *testing.T) {
	as := &authServer{t: t, codes: map[string]authGrant{}}
	srv := httptest.NewServer(as)
	defer srv.Close()
	var second atomic.Int32
	opt := authOpts(srv, func(raw string) error {
		u, _ := url.Parse(raw)
		q := u.Query()
		cb, _ := url.Parse(q.Get("redirect_uri"))
		cq := url.Values{"code": {"forged"}, "state": {q.Get("state")}}
		cb.RawQuery = cq.Encode()
		// First callback: a valid state and a forged code; the second one
		// must be refused.
		resp, err := http.Get(cb.String())
		if err != nil {
			return err
		}
		resp.Body.Close()
		resp, err = http.Get(cb.String())
		if err == nil {
			second.Store(int32(resp.StatusCode))
			resp.Body.Close()
		}
		return nil
	})
	_, err := AuthorizationCodeFlow(context.Background(), opt)
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" {
		t.Fatalf("err = %v, want invalid_grant for the forged code", err)
	}
	if second.Load() != http.StatusGone {
		t.Fatalf("second callback status = %d, want 410", second.Load())
	}
}

func TestAuthorizationCodeFlowValidation(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	for _, tc := range []struct {
		name string
		mod  func(*AuthCodeOptions)
	}{
		{"non-loopback host", func(o *AuthCodeOptions) { o.RedirectHost = "0.0.0.0" }},
		{"hostname", func(o *AuthCodeOptions) { o.RedirectHost = "localhost" }},
		{"no browser", func(o *AuthCodeOptions) { o.OpenBrowser = nil }},
		{"relative path", func(o *AuthCodeOptions) { o.RedirectPath = "cb" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := authOpts(srv, func(string) error { return nil })
			tc.mod(&opt)
			if _, err := AuthorizationCodeFlow(context.Background(), opt); err == nil {
				t.Fatal("want error")
			}
		})
	}
}
