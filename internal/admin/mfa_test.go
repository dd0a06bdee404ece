package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mfaFixture is an admin server with a real second factor (SQLite store,
// vault), the token routes and a stand-in for the OAuth route (which the
// app registers), with a clock the test moves.
type mfaFixture struct {
	s      *Server
	c      *Client
	v      *vault.Vault
	m      *mfa.Manager
	tokens *token.Service
	clock  *testClock
	logs   *lockedBuffer
	// oauthRan counts runs of the OAuth stand-in's handler.
	oauthRan atomic.Int32
	secret   secret.Value
	recovery []string
}

func newMFAFixture(t *testing.T, o Options) *mfaFixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := vault.Initialize(ctx, db.Vault(), secret.New(k), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(k)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	f := &mfaFixture{v: v, clock: &testClock{t: time.Date(2025, 5, 6, 7, 8, 5, 0, time.UTC)}, logs: &lockedBuffer{}}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.m, err = mfa.New(mfa.Options{Store: db.MFA(), Secrets: v, Now: f.clock.Now, Logger: log, MaxFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.tokens, err = token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	o.Vault, o.Logger, o.MFA, o.MFAIssuer = v, log, f.m, "keystile-test"
	extra := o.Extra
	o.Extra = func(mux *http.ServeMux) {
		TokenRoutes(mux, f.tokens, log)
		mux.HandleFunc("POST "+PathOAuth+"/{venue}/login", func(w http.ResponseWriter, r *http.Request) {
			f.oauthRan.Add(1)
			WriteJSON(w, http.StatusOK, OAuthLoginEvent{Done: true})
		})
		if extra != nil {
			extra(mux)
		}
	}
	f.s, f.c = start(t, o)
	return f
}

// enroll enrols through the API and moves past the confirming step.
func (f *mfaFixture) enroll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var err error
	f.secret, err = mfa.NewSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.recovery, err = mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.c.MFAEnroll(ctx, f.secret.Clone(), f.recovery)
	if err != nil || st.State != mfa.StatePending || st.Issuer != "keystile-test" {
		t.Fatalf("enroll: %+v %v", st, err)
	}
	st, err = f.c.MFAConfirm(ctx, f.code(t))
	if err != nil || st.State != mfa.StateActive || st.RecoveryCodesLeft != 10 {
		t.Fatalf("confirm: %+v %v", st, err)
	}
	f.clock.Add(mfa.Period)
}

// code is the TOTP code now.
func (f *mfaFixture) code(t *testing.T) string {
	t.Helper()
	c, err := mfa.CodeAt(f.secret, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func apiCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// wantMFARoutes is every admin route and whether it needs the second
// factor. A route added to the API must be added here and to MFARoutes.
var wantMFARoutes = []struct { //nolint:gochecknoglobals // the test's table
	route  string
	class  MFAClass
	action string
}{
	{"GET /v1/status", MFANever, ""},
	{"GET /v1/secrets", MFANever, ""},
	{"GET /v1/secrets/{name}", MFANever, ""},
	{"PUT /v1/secrets/{name}", MFAAlways, "secret.set"},
	{"POST /v1/secrets/{name}/revoke", MFAAlways, "secret.revoke"},
	{"DELETE /v1/secrets/{name}", MFAAlways, "secret.remove"},
	{"POST /v1/vault/rekey", MFAAlways, "vault.rekey"},
	{"POST /v1/tokens", MFAConditional, "token.create"},
	{"GET /v1/tokens", MFANever, ""},
	{"GET /v1/tokens/{id}", MFANever, ""},
	{"POST /v1/tokens/{id}/revoke", MFANever, "token.revoke"},
	{"POST /v1/tokens/{id}/freeze", MFANever, "token.freeze"},
	{"POST /v1/tokens/{id}/unfreeze", MFAAlways, "token.unfreeze"},
	{"POST /v1/tokens/{id}/rotate", MFAConditional, "token.rotate"},
	{"POST /v1/oauth/{venue}/login", MFAAlways, "oauth.login"},
	{"GET /v1/mfa", MFANever, ""},
	{"POST /v1/mfa/enroll", MFANever, ""},
	{"POST /v1/mfa/enroll/confirm", MFASelf, "mfa.enroll.confirm"},
	{"POST /v1/mfa/login", MFASelf, "mfa.login"},
	{"POST /v1/mfa/logout", MFANever, ""},
	{"POST /v1/mfa/reset", MFAAlways, "mfa.reset"},
	{"POST /v1/mfa/recovery-codes", MFAAlways, "mfa.recovery_codes"},
	{"GET /v1/ca", MFANever, ""},
	{"POST /v1/ca", MFAAlways, "ca.create"},
	{"POST /v1/ca/rotate", MFAAlways, "ca.rotate"},
	{"GET /v1/alerts", MFANever, ""},
	{"POST /v1/alerts/test", MFANever, "alert.test"},
	{"GET /v1/killswitch", MFANever, ""},
	{"POST /v1/killswitch/panic", MFANever, ""},
	{"POST /v1/killswitch/clear", MFAAlways, "panic.clear"},
	{"GET /v1/detect", MFANever, ""},
	{"GET /v1/detect/profiles/{id}", MFANever, ""},
	{"DELETE /v1/detect/holds/{kind}/{subject}", MFAAlways, "detect.release"},
}

// TestMFARouteTable checks the classification of every admin route, then
// calls each one on a server with an enrolled second factor and no
// session or code: the gated ones answer 401 mfa_required before their
// handler runs, the others do not.
func TestMFARouteTable(t *testing.T) {
	got := MFARoutes()
	if len(got) != len(wantMFARoutes) {
		t.Errorf("MFARoutes has %d routes, the table %d", len(got), len(wantMFARoutes))
	}
	for _, w := range wantMFARoutes {
		r, ok := got[w.route]
		if !ok || r.Class != w.class || r.Action != w.action {
			t.Errorf("%s: classified %v %q, want %v %q", w.route, r.Class, r.Action, w.class, w.action)
		}
	}

	f := newMFAFixture(t, Options{})
	ctx := context.Background()
	// Before enrolment nothing is gated: set up what the routes act on.
	if _, err := f.c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("value-1")}}); err != nil {
		t.Fatal(err)
	}
	trading, err := f.c.CreateToken(ctx, CreateTokenRequest{Name: "bot", Venues: []string{"binance"}, TTL: time.Hour})
	if err != nil {
		t.Fatalf("ungated before enrolment: %v", err)
	}
	reader, err := f.c.CreateToken(ctx, CreateTokenRequest{Name: "ro", Venues: []string{"binance"}, Scopes: []string{"market.read", "account.read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.TokenAction(ctx, trading.Info.ID, "freeze"); err != nil {
		t.Fatal(err)
	}
	f.enroll(t)
	secretsBefore, _ := f.c.ListSecrets(ctx)

	body := map[string]string{
		"PUT /v1/secrets/{name}":         `{"fields":{"k":"dmFsdWUtMg=="}}`,
		"POST /v1/secrets/{name}/revoke": `{"compromised":false}`,
		"POST /v1/tokens":                `{"name":"n","venues":["binance"],"ttl_ns":3600000000000}`,
		"POST /v1/tokens/{id}/rotate":    `{"grace_ns":0}`,
		"POST /v1/oauth/{venue}/login":   `{}`,
		"POST /v1/mfa/enroll":            `{"secret":"","recovery_codes":[]}`,
		"POST /v1/mfa/enroll/confirm":    `{"code":""}`,
		"POST /v1/mfa/login":             `{"code":""}`,
		"POST /v1/mfa/recovery-codes":    `{"recovery_codes":[]}`,
	}
	hc := socketClient(f.s)
	// Routes that internal/app registers (Options.Extra) are not on this
	// bare server; TestE2EAdminMFARoutes calls them on the real one.
	registeredByApp := map[string]bool{"GET /v1/ca": true, "POST /v1/ca": true, "POST /v1/ca/rotate": true,
		"GET /v1/killswitch": true, "POST /v1/killswitch/panic": true, "POST /v1/killswitch/clear": true,
		"GET /v1/detect": true, "GET /v1/detect/profiles/{id}": true, "DELETE /v1/detect/holds/{kind}/{subject}": true}
	for _, w := range wantMFARoutes {
		t.Run(w.route, func(t *testing.T) {
			if registeredByApp[w.route] {
				t.Skip("registered by internal/app: TestE2EAdminMFARoutes")
			}
			method, path, _ := strings.Cut(w.route, " ")
			path = strings.NewReplacer("{name}", "cred", "{id}", trading.Info.ID, "{venue}", "stapi").Replace(path)
			b, ok := body[w.route]
			if !ok && method != http.MethodGet && method != http.MethodDelete {
				b = "{}"
			}
			req, _ := http.NewRequest(method, "http://k"+path, strings.NewReader(b))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			gated := resp.StatusCode == http.StatusUnauthorized && strings.Contains(string(data), `"mfa_required"`)
			switch w.class {
			case MFAAlways, MFAConditional: // the conditional ones get a sensitive request here
				if !gated {
					t.Fatalf("not gated: %d %s", resp.StatusCode, data)
				}
				if !strings.Contains(string(data), w.action) {
					t.Fatalf("the refusal does not name %s: %s", w.action, data)
				}
			default:
				if gated {
					t.Fatalf("gated: %s", data)
				}
				if resp.StatusCode == http.StatusInternalServerError {
					t.Fatalf("500: %s", data)
				}
			}
		})
	}
	// Nothing a gated route does happened: no secret changed, no token was
	// minted or unfrozen (revoke and freeze are not gated and did run).
	secretsAfter, _ := f.c.ListSecrets(ctx)
	if len(secretsAfter) != len(secretsBefore) {
		t.Fatalf("secrets %v -> %v", secretsBefore, secretsAfter)
	}
	for i := range secretsAfter {
		if a, b := secretsAfter[i], secretsBefore[i]; a.Name != b.Name || a.CurrentVersion != b.CurrentVersion || a.State != b.State {
			t.Fatalf("secret changed: %+v -> %+v", b, a)
		}
	}
	toks, _ := f.c.ListTokens(ctx)
	if len(toks) != 2 {
		t.Fatalf("%d tokens", len(toks))
	}
	if i, _ := f.c.ShowToken(ctx, trading.Info.ID); i.State != "revoked" || i.RotatedTo != "" {
		t.Fatalf("trading token %+v", i)
	}
	if f.oauthRan.Load() != 0 {
		t.Fatal("the OAuth handler ran without a second factor")
	}
	// The conditional routes let read-only tokens through.
	if _, err := f.c.CreateToken(ctx, CreateTokenRequest{Name: "ro2", Venues: []string{"binance"}, Scopes: []string{"market.read", "*.read"}, TTL: time.Hour}); err != nil {
		t.Fatalf("read-only token: %v", err)
	}
	if _, err := f.c.RotateToken(ctx, reader.Info.ID, 0); err != nil {
		t.Fatalf("rotate a read-only token: %v", err)
	}
	for _, scopes := range [][]string{nil, {"order.*"}, {"market.read", "order.place"}, {"*"}, {"wallet.withdraw"}, {"apikey.manage"}, {"*.place"}, {"media.write"}, {"read"}} {
		_, err := f.c.CreateToken(ctx, CreateTokenRequest{Name: "t", Venues: []string{"binance"}, Scopes: scopes, TTL: time.Hour})
		if apiCode(err) != "mfa_required" {
			t.Errorf("scopes %v: %v", scopes, err)
		}
	}
}

func TestReadOnlyScopes(t *testing.T) {
	for _, tc := range []struct {
		scopes []string
		ok     bool
	}{
		{[]string{"market.read"}, true},
		{[]string{"market.read", "account.read", "order.read"}, true},
		{[]string{"*.read"}, true},
		{nil, false},
		{[]string{}, false},
		{[]string{"order.*"}, false},
		{[]string{"*"}, false},
		{[]string{"market.read", "order.place"}, false},
		{[]string{".read"}, false},
		{[]string{"read"}, false},
		{[]string{"market.reader"}, false},
		{[]string{"market.read.*"}, false},
	} {
		if got := ReadOnlyScopes(tc.scopes); got != tc.ok {
			t.Errorf("%v: %v", tc.scopes, got)
		}
	}
}

func TestUnclassifiedRouteRefused(t *testing.T) {
	ran := false
	f := newMFAFixture(t, Options{Extra: func(mux *http.ServeMux) {
		mux.HandleFunc("POST /v1/panic/clear", func(w http.ResponseWriter, r *http.Request) { ran = true })
	}})
	err := f.c.Do(context.Background(), http.MethodPost, "/v1/panic/clear", struct{}{}, nil)
	if apiCode(err) != "unclassified_route" || ran {
		t.Fatalf("unclassified route: %v (ran %v)", err, ran)
	}
	if !strings.Contains(f.logs.String(), "no MFA classification") {
		t.Fatal("not logged")
	}
}

func TestRequireMFAOutsideTheGate(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /x", func(w http.ResponseWriter, r *http.Request) {
		if RequireMFA(w, r, ActionPanicClear) {
			w.WriteHeader(http.StatusOK)
		}
	})
	rec := newRecorder()
	req, _ := http.NewRequest(http.MethodPost, "/x", nil)
	mux.ServeHTTP(rec, req)
	if rec.status != http.StatusInternalServerError {
		t.Fatalf("status %d: a handler outside the gate must fail closed", rec.status)
	}
}

// TestRequireMFAHook is how a later handler (panic clear) uses the gate.
func TestRequireMFAHook(t *testing.T) {
	ran := 0
	f := newMFAFixture(t, Options{Extra: func(mux *http.ServeMux) {
		mux.HandleFunc("POST "+PathTokens+"/{id}/unfreeze-all", func(w http.ResponseWriter, r *http.Request) {
			if !RequireMFA(w, r, ActionPanicClear) {
				return
			}
			ran++
			w.WriteHeader(http.StatusNoContent)
		})
	}})
	// Unclassified: refused before the handler.
	if err := f.c.Do(context.Background(), http.MethodPost, PathTokens+"/x/unfreeze-all", struct{}{}, nil); apiCode(err) != "unclassified_route" || ran != 0 {
		t.Fatalf("%v %d", err, ran)
	}
}

type recorder struct {
	h      http.Header
	status int
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestGateCodesAndSessions(t *testing.T) {
	f := newMFAFixture(t, Options{})
	f.enroll(t)
	ctx := context.Background()
	set := func(c *Client) error {
		_, err := c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-1")}})
		return err
	}
	if err := set(f.c); apiCode(err) != "mfa_required" {
		t.Fatalf("no code: %v", err)
	}
	// A code, once.
	code := f.code(t)
	f.c.SetMFA(ClientMFA{Code: code})
	if err := set(f.c); err != nil {
		t.Fatalf("with a code: %v", err)
	}
	if err := set(f.c); apiCode(err) != "mfa_required" {
		t.Fatalf("the client reused the code: %v", err)
	}
	f.c.SetMFA(ClientMFA{Code: code})
	if err := set(f.c); apiCode(err) != "mfa_replay" {
		t.Fatalf("replayed code: %v", err)
	}
	// A session from mfa login.
	f.clock.Add(mfa.Period)
	g, err := f.c.MFALogin(ctx, f.code(t))
	if err != nil || !strings.HasPrefix(g.Session, mfa.SessionPrefix) || !g.ExpiresAt.Equal(f.clock.Now().Add(mfa.DefaultSessionTTL)) {
		t.Fatalf("login: %+v %v", g, err)
	}
	if _, err := f.c.MFALogin(ctx, f.code(t)); apiCode(err) != "mfa_replay" {
		t.Fatalf("second login with the same code: %v", err)
	}
	refused := 0
	f.c.SetMFA(ClientMFA{Session: g.Session, SessionRefused: func() { refused++ }})
	for range 3 {
		if err := set(f.c); err != nil {
			t.Fatalf("with a session: %v", err)
		}
	}
	st, err := f.c.MFAStatus(ctx)
	if err != nil || !st.SessionExpires.Equal(g.ExpiresAt) || st.Sessions != 1 || st.Principal == "" {
		t.Fatalf("status %+v %v", st, err)
	}
	// Logout ends it; the client forgets it when refused.
	if err := f.c.MFALogout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := set(f.c); apiCode(err) != "mfa_session_invalid" || refused != 1 {
		t.Fatalf("after logout: %v (refused %d)", err, refused)
	}
	if err := set(f.c); apiCode(err) != "mfa_required" {
		t.Fatalf("the client kept the refused session: %v", err)
	}
	// A recovery code works once.
	f.c.SetMFA(ClientMFA{Code: f.recovery[0]})
	if err := set(f.c); err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	f.c.SetMFA(ClientMFA{Code: f.recovery[0]})
	if err := set(f.c); apiCode(err) != "mfa_invalid" {
		t.Fatalf("recovery code twice: %v", err)
	}
	// Wrong codes lock (MaxFailures 3; one failure so far).
	for range 2 {
		f.c.SetMFA(ClientMFA{Code: "000000"})
		_ = set(f.c)
	}
	f.c.SetMFA(ClientMFA{Code: f.code(t)})
	err = set(f.c)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != "mfa_locked" {
		t.Fatalf("locked: %v", err)
	}
	// Malformed header input: a clean 401 (each wrong code locks again).
	for _, bad := range []string{"12345", "x", strings.Repeat("9", 100), "１２３４５６"} {
		f.clock.Add(2 * time.Hour)
		f.c.SetMFA(ClientMFA{Code: bad})
		if err := set(f.c); apiCode(err) != "mfa_invalid" {
			t.Errorf("code %q: %v", bad, err)
		}
	}
	if strings.Contains(f.logs.String(), string(f.secret.Reveal())) || strings.Contains(f.logs.String(), f.recovery[0]) || strings.Contains(f.logs.String(), g.Session) {
		t.Fatal("a secret, recovery code or session reached the log")
	}
}

func TestClientPromptsForACode(t *testing.T) {
	f := newMFAFixture(t, Options{})
	f.enroll(t)
	ctx := context.Background()
	var whys []string
	answers := []string{"000000", f.code(t)}
	f.c.SetMFA(ClientMFA{Prompt: func(_ context.Context, why string) (string, error) {
		whys = append(whys, why)
		a := answers[0]
		answers = answers[1:]
		return a, nil
	}})
	if _, err := f.c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-1")}}); err != nil {
		t.Fatalf("after prompts: %v", err)
	}
	if len(whys) != 2 || !strings.Contains(whys[0], "secret.set needs a second factor") || !strings.Contains(whys[1], "not valid") {
		t.Fatalf("prompts %q", whys)
	}
	// It gives up after a few wrong answers.
	n := 0
	f.c.SetMFA(ClientMFA{Prompt: func(context.Context, string) (string, error) { n++; return "111111", nil }})
	if _, err := f.c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-2")}}); err == nil || n != maxMFAPrompts {
		t.Fatalf("%v after %d prompts", err, n)
	}
	// A prompt that fails stops the request.
	f.c.SetMFA(ClientMFA{Prompt: func(context.Context, string) (string, error) { return "", errors.New("no terminal") }})
	if _, err := f.c.Rekey(ctx); err == nil || !strings.Contains(err.Error(), "no terminal") {
		t.Fatalf("prompt failure: %v", err)
	}
}

func TestMFAEnrolmentAPI(t *testing.T) {
	f := newMFAFixture(t, Options{})
	ctx := context.Background()
	st, err := f.c.MFAStatus(ctx)
	if err != nil || st.State != "none" || st.Issuer != "keystile-test" || st.SessionTTLSeconds != 300 {
		t.Fatalf("status %+v %v", st, err)
	}
	if _, err := f.c.MFALogin(ctx, "123456"); apiCode(err) != "not_enrolled" {
		t.Fatalf("login before enrolment: %v", err)
	}
	if _, err := f.c.MFAConfirm(ctx, "123456"); apiCode(err) != "no_pending_enrollment" {
		t.Fatalf("confirm before enrolment: %v", err)
	}
	if _, err := f.c.MFAEnroll(ctx, secret.New([]byte("short")), nil); apiCode(err) != "invalid" {
		t.Fatalf("bad secret: %v", err)
	}
	f.enroll(t)
	sec, _ := mfa.NewSecret(nil)
	if _, err := f.c.MFAEnroll(ctx, sec, f.recovery); apiCode(err) != "already_enrolled" {
		t.Fatalf("second enrolment: %v", err)
	}
	// The TOTP secret's credential cannot be touched through the secret
	// endpoints, even with a second factor.
	f.c.SetMFA(ClientMFA{Code: f.code(t)})
	if _, err := f.c.SetSecret(ctx, mfa.SecretName, SetSecretRequest{Fields: map[string][]byte{mfa.SecretField: []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")}}); apiCode(err) != "reserved" {
		t.Fatalf("overwrite the TOTP secret: %v", err)
	}
	for _, name := range []string{mfa.SecretName, "keystile.other"} {
		f.clock.Add(mfa.Period)
		f.c.SetMFA(ClientMFA{Code: f.code(t)})
		if err := f.c.RemoveSecret(ctx, name, true); apiCode(err) != "reserved" {
			t.Fatalf("remove %s: %v", name, err)
		}
		f.clock.Add(mfa.Period)
		f.c.SetMFA(ClientMFA{Code: f.code(t)})
		if _, err := f.c.RevokeSecret(ctx, name, true); apiCode(err) != "reserved" {
			t.Fatalf("revoke %s: %v", name, err)
		}
	}
	// Recovery codes: replace (gated), then reset (gated) with a recovery code.
	fresh, _ := mfa.NewRecoveryCodes(nil, 8)
	if _, err := f.c.MFARecoveryCodes(ctx, fresh); apiCode(err) != "mfa_required" {
		t.Fatalf("replace without a factor: %v", err)
	}
	f.clock.Add(mfa.Period)
	f.c.SetMFA(ClientMFA{Code: f.code(t)})
	if st, err := f.c.MFARecoveryCodes(ctx, fresh); err != nil || st.RecoveryCodesLeft != 8 {
		t.Fatalf("replace: %+v %v", st, err)
	}
	if _, err := f.c.MFAReset(ctx); apiCode(err) != "mfa_required" {
		t.Fatalf("reset without a factor: %v", err)
	}
	f.c.SetMFA(ClientMFA{Code: f.recovery[1]}) // an old code: replaced
	if _, err := f.c.MFAReset(ctx); apiCode(err) != "mfa_invalid" {
		t.Fatalf("reset with a replaced recovery code: %v", err)
	}
	f.c.SetMFA(ClientMFA{Code: strings.ToUpper(fresh[2])})
	if st, err := f.c.MFAReset(ctx); err != nil || st.State != "none" {
		t.Fatalf("reset: %+v %v", st, err)
	}
	if _, err := f.c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v")}}); err != nil {
		t.Fatalf("after reset nothing is gated: %v", err)
	}
	l, _ := f.c.ListSecrets(ctx)
	for _, i := range l {
		if i.Name == mfa.SecretName {
			t.Fatal("the TOTP secret survived the reset")
		}
	}
}

func TestMFAEndpointsRefuseMalformedBodies(t *testing.T) {
	f := newMFAFixture(t, Options{})
	hc := socketClient(f.s)
	for _, path := range []string{"/enroll", "/enroll/confirm", "/login", "/recovery-codes"} {
		for _, b := range []string{"{", `{"code":1}`, `{"extra":true}`, `{"secret":"!!"}`, strings.Repeat("[", 5000)} {
			resp, err := hc.Post("http://k"+PathMFA+path, "application/json", strings.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 4 || strings.Contains(string(data), "json:") {
				t.Errorf("%s %.20q: %d %s", path, b, resp.StatusCode, data)
			}
		}
	}
}

func TestRequestIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		id := ""
		ctx := context.WithValue(context.Background(), reqIDKey{}, &id)
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		a, b := requestID(r), requestID(r)
		if a != b || !strings.HasPrefix(a, "adm_") || seen[a] {
			t.Fatalf("%q %q", a, b)
		}
		seen[a] = true
	}
}

// TestGateCannotBeSidestepped sends gated requests in other spellings
// (unclean paths, encoded segments, other method cases, HEAD/GET for a
// write, a code in the body, method override headers): none changes a
// secret or answers 2xx.
func TestGateCannotBeSidestepped(t *testing.T) {
	f := newMFAFixture(t, Options{})
	ctx := context.Background()
	if _, err := f.c.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("value-1")}}); err != nil {
		t.Fatal(err)
	}
	f.enroll(t)
	body := `{"fields":{"k":"dmFsdWUtMg=="}}`
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
	}{
		{"trailing slash", "PUT", "/v1/secrets/cred/", body, nil},
		{"double slash", "PUT", "//v1/secrets/cred", body, nil},
		{"dot segment", "PUT", "/v1/./secrets/cred", body, nil},
		{"dot-dot", "PUT", "/v1/x/../secrets/cred", body, nil},
		{"encoded name", "PUT", "/v1/secrets/%63red", body, nil},
		{"encoded slash", "PUT", "/v1%2Fsecrets/cred", body, nil},
		{"lower-case method", "put", "/v1/secrets/cred", body, nil},
		{"method override", "POST", "/v1/secrets/cred", body, map[string]string{"X-HTTP-Method-Override": "PUT", "X-Method-Override": "PUT"}},
		{"code in the body", "PUT", "/v1/secrets/cred", `{"fields":{"k":"dmFsdWUtMg=="},"code":"123456"}`, nil},
		{"empty code header", "PUT", "/v1/secrets/cred", body, map[string]string{HeaderMFACode: ""}},
		{"session of garbage", "PUT", "/v1/secrets/cred", body, map[string]string{HeaderMFASession: "kss_" + strings.Repeat("A", 43)}},
		{"revoke via encoded path", "POST", "/v1/secrets/cred%2Frevoke", `{"compromised":true}`, nil},
		{"rekey with a query", "POST", "/v1/vault/rekey?mfa=ok", "", nil},
		{"unfreeze with upper path", "POST", "/V1/tokens/x/unfreeze", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", tc.method, tc.path, len(tc.body))
			for k, v := range tc.hdr {
				payload += k + ": " + v + "\r\n"
			}
			payload += "\r\n" + tc.body
			resp, data := rawAdmin(t, f.s, payload)
			if resp != nil && resp.StatusCode/100 == 2 {
				t.Fatalf("answered %d %s", resp.StatusCode, data)
			}
		})
	}
	l, err := f.c.ListSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range l {
		if i.Name == "cred" && (i.CurrentVersion != 1 || i.State != "active") {
			t.Fatalf("the secret changed: %+v", i)
		}
	}
}
