package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// AuthCodeOptions configures AuthorizationCodeFlow.
type AuthCodeOptions struct {
	// AuthURL and TokenURL are the authorization and token endpoints.
	// Required.
	AuthURL, TokenURL string
	// ClientID is required. ClientSecret is optional (public clients
	// send client_id in the body instead).
	ClientID     string
	ClientSecret secret.Value
	// AuthStyle selects client authentication when ClientSecret is set.
	AuthStyle AuthStyle
	// Scopes are requested, space-separated.
	Scopes []string
	// RedirectHost is the loopback IP literal to listen on and redirect
	// to. If empty, 127.0.0.1. Only loopback addresses are accepted.
	RedirectHost string
	// RedirectPort is the port; 0 picks an ephemeral one.
	RedirectPort int
	// RedirectPath is the callback path. If empty, /callback.
	RedirectPath string
	// OpenBrowser is given the authorization URL (the CLI opens it or
	// prints it). Required.
	OpenBrowser func(authURL string) error
	// HTTPClient calls the token endpoint. If nil, a client with a 30 s
	// timeout that follows no redirects.
	HTTPClient *http.Client
	// Listen opens the loopback listener. If nil, net.Listen.
	Listen func(network, address string) (net.Listener, error)
	// Logger receives operational messages. Nil discards.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// PKCEChallengeS256 returns the S256 code_challenge for verifier (RFC 7636
// §4.2): BASE64URL-ENCODE(SHA256(ASCII(code_verifier))).
func PKCEChallengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randomToken returns 32 random bytes base64url-encoded (43 characters,
// within RFC 7636's 43..128 unreserved characters).
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

type callbackResult struct {
	code string
	err  error
}

// AuthorizationCodeFlow runs the OAuth 2.0 authorization code grant with
// PKCE S256 through a loopback redirect: it listens on the loopback
// address, hands the authorization URL (with code_challenge and a random
// state) to OpenBrowser, accepts exactly one request on the redirect path,
// checks its state in constant time, exchanges the code with the
// code_verifier and the same redirect_uri, and shuts the listener down. It
// returns when done or when ctx ends.
func AuthorizationCodeFlow(ctx context.Context, opt AuthCodeOptions) (Tokens, error) {
	if opt.AuthURL == "" || opt.TokenURL == "" || opt.ClientID == "" || opt.OpenBrowser == nil {
		return Tokens{}, errors.New("session: oauth login: AuthURL, TokenURL, ClientID and OpenBrowser are required")
	}
	authURL, err := url.Parse(opt.AuthURL)
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth login: auth url: %w", err)
	}
	host := opt.RedirectHost
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return Tokens{}, errors.New("session: oauth login: RedirectHost must be a loopback IP literal")
	}
	path := opt.RedirectPath
	if path == "" {
		path = "/callback"
	}
	if !strings.HasPrefix(path, "/") {
		return Tokens{}, errors.New("session: oauth login: RedirectPath must start with /")
	}
	if opt.RedirectPort < 0 || opt.RedirectPort > 65535 {
		return Tokens{}, errors.New("session: oauth login: RedirectPort out of range")
	}
	if opt.AuthStyle != AuthBasic && opt.AuthStyle != AuthPost {
		return Tokens{}, errors.New("session: oauth login: unknown AuthStyle")
	}
	listen := opt.Listen
	if listen == nil {
		listen = net.Listen
	}
	client := opt.HTTPClient
	if client == nil {
		client = defaultClient()
	}
	log := discardLogger(opt.Logger)

	verifier, err := randomToken()
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth login: %w", err)
	}
	state, err := randomToken()
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth login: %w", err)
	}

	ln, err := listen("tcp", net.JoinHostPort(host, strconv.Itoa(opt.RedirectPort)))
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth login: listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	redirectURI := (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: path}).String()

	results := make(chan callbackResult, 1)
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		handled := false
		once.Do(func() {
			handled = true
			res := readCallback(r.URL.Query(), state)
			if res.err != nil {
				http.Error(w, "keystile: authorization failed; see the terminal.", http.StatusBadRequest)
			} else {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = w.Write([]byte("keystile: authorization received; you may close this window.\n"))
			}
			results <- res
		})
		if !handled {
			http.Error(w, "keystile: callback already received", http.StatusGone)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	q := authURL.Query()
	q.Set("response_type", "code")
	q.Set("client_id", opt.ClientID)
	q.Set("redirect_uri", redirectURI)
	if len(opt.Scopes) > 0 {
		q.Set("scope", strings.Join(opt.Scopes, " "))
	}
	q.Set("state", state)
	q.Set("code_challenge", PKCEChallengeS256(verifier))
	q.Set("code_challenge_method", "S256")
	authURL.RawQuery = q.Encode()
	if err := opt.OpenBrowser(authURL.String()); err != nil {
		return Tokens{}, fmt.Errorf("session: oauth login: open browser: %w", err)
	}
	log.Info("session: oauth login waiting for callback", "redirect_uri", redirectURI)

	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return Tokens{}, fmt.Errorf("session: oauth login: waiting for callback: %w", ctx.Err())
	}
	if res.err != nil {
		return Tokens{}, res.err
	}
	codeBytes := []byte(res.code)
	defer secret.Wipe(codeBytes)
	params := []formField{
		{"grant_type", []byte("authorization_code")},
		{"code", codeBytes},
		{"redirect_uri", []byte(redirectURI)},
		{"code_verifier", []byte(verifier)},
	}
	if !opt.ClientSecret.IsZero() && opt.AuthStyle == AuthBasic {
		// RFC 6749 §4.1.3 asks for client_id when the client is not
		// authenticating; it is harmless alongside Basic.
		params = append(params, formField{"client_id", []byte(opt.ClientID)})
	}
	toks, err := tokenRequest(ctx, client, opt.TokenURL, opt.AuthStyle,
		secret.FromString(opt.ClientID), opt.ClientSecret, params, clockOrNow(opt.Now), secret.New(codeBytes))
	if err != nil {
		return Tokens{}, fmt.Errorf("session: oauth login: code exchange: %w", err)
	}
	return toks, nil
}

// readCallback checks one redirect's query against the expected state.
func readCallback(q url.Values, state string) callbackResult {
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		return callbackResult{err: ErrStateMismatch}
	}
	if e := q.Get("error"); e != "" {
		code := e
		if !validErrorCode(code) {
			code = "invalid_error_code"
		}
		return callbackResult{err: &OAuthError{Code: code, Description: cleanText(q.Get("error_description"))}}
	}
	code := q.Get("code")
	if code == "" {
		return callbackResult{err: errors.New("session: oauth login: callback without code")}
	}
	return callbackResult{code: code}
}
