package session

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

const (
	canaryUser   = "canary-user-5d1e"
	canaryPass   = "canary-pass-9b7f3a"
	canaryAppKey = "canary-appkey-2c44"
)

// bfServer is a small Betfair identity + API emulator.
type bfServer struct {
	t          *testing.T
	logins     atomic.Int32
	keepAlives atomic.Int32
	logouts    atomic.Int32
	loginDelay time.Duration
	failCode   string // if set, logins FAIL with it

	mu     sync.Mutex
	next   int
	issued map[string]time.Time // valid session -> last refresh
	ages   []time.Duration      // session age at each keepAlive
	gone   []string             // logged-out sessions
}

func newBFServer(t *testing.T) *bfServer {
	return &bfServer{t: t, issued: map[string]time.Time{}}
}

func (s *bfServer) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *bfServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.URL.Path != "/betting" {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Application") != canaryAppKey {
		s.writeJSON(w, map[string]string{"status": "FAIL", "error": "APP_KEY_INVALID", "loginStatus": "APP_KEY_INVALID"})
		return
	}
	switch r.URL.Path {
	case "/api/login", "/api/certlogin":
		cert := r.URL.Path == "/api/certlogin"
		if cert && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
			s.writeJSON(w, map[string]string{"loginStatus": "CERT_AUTH_REQUIRED"})
			return
		}
		if !cert && r.Header.Get("Accept") != "application/json" {
			http.Error(w, "accept", http.StatusNotAcceptable)
			return
		}
		s.logins.Add(1)
		time.Sleep(s.loginDelay)
		code := s.failCode
		if code == "" && (r.PostFormValue("username") != canaryUser || r.PostFormValue("password") != canaryPass) {
			code = "INVALID_USERNAME_OR_PASSWORD"
		}
		if code == "ECHO" { // a hostile server echoing the password as the code
			code = r.PostFormValue("password")
		}
		if code != "" {
			if cert {
				s.writeJSON(w, map[string]string{"loginStatus": code})
			} else {
				s.writeJSON(w, map[string]string{"token": "", "status": "FAIL", "error": code})
			}
			return
		}
		s.mu.Lock()
		s.next++
		tok := fmt.Sprintf("SESSION-%d", s.next)
		s.issued[tok] = time.Now()
		s.mu.Unlock()
		if cert {
			s.writeJSON(w, map[string]string{"sessionToken": tok, "loginStatus": "SUCCESS"})
		} else {
			s.writeJSON(w, map[string]string{"token": tok, "product": canaryAppKey, "status": "SUCCESS", "error": ""})
		}
	case "/api/keepAlive", "/api/logout":
		tok := r.Header.Get("X-Authentication")
		s.mu.Lock()
		last, ok := s.issued[tok]
		if ok && r.URL.Path == "/api/keepAlive" {
			s.ages = append(s.ages, time.Since(last))
			s.issued[tok] = time.Now()
			s.keepAlives.Add(1)
		}
		if ok && r.URL.Path == "/api/logout" {
			delete(s.issued, tok)
			s.gone = append(s.gone, tok)
			s.logouts.Add(1)
		}
		s.mu.Unlock()
		if !ok {
			s.writeJSON(w, map[string]string{"token": tok, "status": "FAIL", "error": "NO_SESSION"})
			return
		}
		s.writeJSON(w, map[string]string{"token": tok, "status": "SUCCESS", "error": ""})
	case "/betting":
		s.mu.Lock()
		_, ok := s.issued[r.Header.Get("X-Authentication")]
		s.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"detail":{"APINGException":{"requestUUID":"x","errorCode":"INVALID_SESSION_INFORMATION","errorDetails":""},"exceptionname":"APINGException"},"faultcode":"Client","faultstring":"ANGX-0003"}`))
			return
		}
		_, _ = w.Write([]byte(`[]`))
	default:
		http.NotFound(w, r)
	}
}

func (s *bfServer) expireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.issued)
}

func bfCred(extra map[string]string) CredentialFunc {
	return func(ctx context.Context, fn func(map[string]secret.Value) error) error {
		f := map[string]secret.Value{
			FieldAppKey:   secret.FromString(canaryAppKey),
			FieldUsername: secret.FromString(canaryUser),
			FieldPassword: secret.FromString(canaryPass),
		}
		for k, v := range extra {
			f[k] = secret.FromString(v)
		}
		return fn(f)
	}
}

func newLoginBetfair(t *testing.T, srv *httptest.Server, mod func(*BetfairOptions)) *Betfair {
	t.Helper()
	opt := BetfairOptions{
		Mode:        BetfairLogin,
		IdentityURL: srv.URL,
		Credential:  bfCred(nil),
		HTTPClient:  srv.Client(),
	}
	if mod != nil {
		mod(&opt)
	}
	b, err := NewBetfair(opt)
	if err != nil {
		t.Fatalf("NewBetfair: %v", err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

func assertNoCanary(t *testing.T, what, s string) {
	t.Helper()
	for _, c := range []string{canaryPass, canaryUser, canaryClientSecret, canaryRefresh} {
		if strings.Contains(s, c) {
			t.Fatalf("%s leaks canary %q: %s", what, c, s)
		}
	}
}

func TestBetfairColdConcurrentSingleLogin(t *testing.T) {
	bs := newBFServer(t)
	bs.loginDelay = 50 * time.Millisecond
	srv := httptest.NewServer(bs)
	defer srv.Close()
	b := newLoginBetfair(t, srv, nil)

	const n = 200
	toks := make([]Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { toks[i], errs[i] = b.Token(context.Background()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Token %d: %v", i, errs[i])
		}
		if !toks[i].Value.Equal(toks[0].Value) {
			t.Fatalf("Token %d differs", i)
		}
	}
	if got := bs.logins.Load(); got != 1 {
		t.Fatalf("logins = %d, want 1", got)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	b.Apply(req, toks[0])
	if req.Header.Get("X-Application") != canaryAppKey || req.Header.Get("X-Authentication") != "SESSION-1" {
		t.Fatalf("Apply headers = %v", req.Header)
	}
}

func TestBetfairExpiredSessionOneRelogin(t *testing.T) {
	bs := newBFServer(t)
	bs.loginDelay = 20 * time.Millisecond
	srv := httptest.NewServer(bs)
	defer srv.Close()
	b := newLoginBetfair(t, srv, nil)
	stale, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bs.expireAll()

	call := func(tok Token) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/betting", nil)
		b.Apply(req, tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	const n = 50
	var wg sync.WaitGroup
	var invalidations, ok atomic.Int32
	for range n {
		wg.Go(func() {
			tok := stale // every caller got the same session before it expired
			for attempt := 0; attempt < 2; attempt++ {
				status, body := call(tok)
				if BetfairSessionExpired(status, body) {
					invalidations.Add(1)
					b.Invalidate(tok)
					var err error
					if tok, err = b.Token(context.Background()); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if status == http.StatusOK {
					ok.Add(1)
				}
				return
			}
		})
	}
	wg.Wait()
	if got := bs.logins.Load(); got != 2 {
		t.Fatalf("logins = %d, want 2 (one initial, one re-login)", got)
	}
	if ok.Load() != n || invalidations.Load() != n {
		t.Fatalf("ok = %d invalidations = %d, want %d each", ok.Load(), invalidations.Load(), n)
	}
}

func TestBetfairKeepAliveBeforeHalfLifetime(t *testing.T) {
	bs := newBFServer(t)
	srv := httptest.NewServer(bs)
	defer srv.Close()
	const lifetime = 400 * time.Millisecond
	b := newLoginBetfair(t, srv, func(o *BetfairOptions) { o.SessionLifetime = lifetime })
	first, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2*lifetime + 100*time.Millisecond) // the session would have expired without keep-alive
	again, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Value.Equal(first.Value) || bs.logins.Load() != 1 {
		t.Fatalf("session replaced (logins = %d); keep-alive did not extend it", bs.logins.Load())
	}
	bs.mu.Lock()
	ages := append([]time.Duration(nil), bs.ages...)
	bs.mu.Unlock()
	if len(ages) < 3 {
		t.Fatalf("keepAlives = %d, want >= 3", len(ages))
	}
	for i, a := range ages {
		if a >= lifetime/2 {
			t.Fatalf("keepAlive %d at session age %s, want < %s", i, a, lifetime/2)
		}
	}
}

func TestBetfairKeepAliveNoSessionDropsToken(t *testing.T) {
	bs := newBFServer(t)
	srv := httptest.NewServer(bs)
	defer srv.Close()
	b := newLoginBetfair(t, srv, func(o *BetfairOptions) { o.SessionLifetime = 200 * time.Millisecond })
	if _, err := b.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	bs.expireAll()
	time.Sleep(150 * time.Millisecond)
	tok, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(tok.Value.Reveal()) != "SESSION-2" || bs.logins.Load() != 2 {
		t.Fatalf("after NO_SESSION keep-alive: token %s, logins %d", tok.Value.Reveal(), bs.logins.Load())
	}
}

func TestBetfairLogoutOnClose(t *testing.T) {
	bs := newBFServer(t)
	srv := httptest.NewServer(bs)
	defer srv.Close()
	b := newLoginBetfair(t, srv, nil)
	tok, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	bs.mu.Lock()
	gone := append([]string(nil), bs.gone...)
	bs.mu.Unlock()
	if len(gone) != 1 || gone[0] != string(tok.Value.Reveal()) {
		t.Fatalf("logged out sessions = %v", gone)
	}
	if _, err := b.Token(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Token after Close: %v, want ErrClosed", err)
	}
}

func TestBetfairLoginRateCap(t *testing.T) {
	bs := newBFServer(t)
	srv := httptest.NewServer(bs)
	defer srv.Close()
	b := newLoginBetfair(t, srv, func(o *BetfairOptions) { o.LoginsPerMinute = 2; o.LoginBurst = 2 })
	for i := range 2 {
		tok, err := b.Token(context.Background())
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		b.Invalidate(tok)
	}
	_, err := b.Token(context.Background())
	var rl *RateLimitedError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || rl.RetryAfter <= 0 {
		t.Fatalf("third login: %v, want RateLimitedError", err)
	}
	if got := bs.logins.Load(); got != 2 {
		t.Fatalf("server saw %d logins, want 2", got)
	}
}

func TestBetfairFailCodes(t *testing.T) {
	for _, tc := range []struct {
		name, serverCode, want string
	}{
		{"bad password", "INVALID_USERNAME_OR_PASSWORD", "INVALID_USERNAME_OR_PASSWORD"},
		{"locked", "ACCOUNT_NOW_LOCKED", "ACCOUNT_NOW_LOCKED"},
		{"cert required", "CERT_AUTH_REQUIRED", "CERT_AUTH_REQUIRED"},
		{"temporary ban", "TEMPORARY_BAN_TOO_MANY_REQUESTS", "TEMPORARY_BAN_TOO_MANY_REQUESTS"},
		{"echoed password", "ECHO", "UNKNOWN"},
		{"garbage", "<script>", "UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := newBFServer(t)
			bs.failCode = tc.serverCode
			srv := httptest.NewServer(bs)
			defer srv.Close()
			var logs bytes.Buffer
			b := newLoginBetfair(t, srv, func(o *BetfairOptions) {
				o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			_, err := b.Token(context.Background())
			var be *BetfairError
			if !errors.As(err, &be) || be.Code != tc.want || be.Op != "login" {
				t.Fatalf("err = %v, want BetfairError %s", err, tc.want)
			}
			assertNoCanary(t, "error", fmt.Sprintf("%v %+v %#v", err, err, err))
			assertNoCanary(t, "log", logs.String())
		})
	}
}

// testCA makes a CA and a client certificate it signs; other is a client
// certificate from an unrelated CA.
func testCA(t *testing.T) (pool *x509.CertPool, certPEM, keyPEM, otherCertPEM, otherKeyPEM string) {
	t.Helper()
	mk := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			IsCA:         isCA, BasicConstraintsValid: true,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		kder, _ := x509.MarshalECPrivateKey(key)
		return c, key,
			string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	}
	ca, caKey, _, _ := mk("keystile test CA", nil, nil, true)
	_, _, certPEM, keyPEM = mk("betfair bot", ca, caKey, false)
	other, otherKey, _, _ := mk("other CA", nil, nil, true)
	_, _, otherCertPEM, otherKeyPEM = mk("intruder", other, otherKey, false)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certPEM, keyPEM, otherCertPEM, otherKeyPEM
}

func TestBetfairCertLogin(t *testing.T) {
	pool, certPEM, keyPEM, otherCert, otherKey := testCA(t)
	bs := newBFServer(t)
	srv := httptest.NewUnstartedServer(bs)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	plain := httptest.NewServer(bs) // keepAlive/logout host
	defer plain.Close()
	certClient := func(cert *tls.Certificate) (*http.Client, error) {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		return &http.Client{Transport: tr}, nil
	}
	for _, tc := range []struct {
		name    string
		fields  map[string]string
		wantErr func(error) bool
	}{
		{"valid client cert", map[string]string{FieldClientCert: certPEM, FieldClientKey: keyPEM}, nil},
		{"no client cert", nil, func(err error) bool {
			var m *MissingFieldError
			return errors.As(err, &m) && m.Field == FieldClientCert
		}},
		{"cert from another CA", map[string]string{FieldClientCert: otherCert, FieldClientKey: otherKey}, func(err error) bool {
			var be *BetfairError
			return err != nil && !errors.As(err, &be)
		}},
		{"key does not match", map[string]string{FieldClientCert: certPEM, FieldClientKey: otherKey}, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "client certificate or key invalid")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bs.logins.Load()
			b, err := NewBetfair(BetfairOptions{
				Mode:            BetfairCertLogin,
				IdentityURL:     plain.URL,
				CertIdentityURL: srv.URL,
				Credential:      bfCred(tc.fields),
				HTTPClient:      plain.Client(),
				CertClient:      certClient,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(context.Background())
			tok, err := b.Token(context.Background())
			if tc.wantErr == nil {
				if err != nil || tok.Value.IsZero() || bs.logins.Load() != before+1 {
					t.Fatalf("certlogin: tok=%v err=%v", tok.Value, err)
				}
				return
			}
			if !tc.wantErr(err) {
				t.Fatalf("unexpected error: %v", err)
			}
			if bs.logins.Load() != before {
				t.Fatalf("server counted a login without a valid client cert")
			}
			assertNoCanary(t, "error", err.Error())
		})
	}
}

func TestNewBetfairValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  BetfairOptions
	}{
		{"no credential", BetfairOptions{Mode: BetfairLogin}},
		{"certlogin without CertClient", BetfairOptions{Credential: bfCred(nil)}},
		{"bad mode", BetfairOptions{Mode: "sso", Credential: bfCred(nil)}},
		{"keep-alive too slow", BetfairOptions{Mode: BetfairLogin, Credential: bfCred(nil), SessionLifetime: time.Hour, KeepAliveInterval: 30 * time.Minute}},
		{"too many logins", BetfairOptions{Mode: BetfairLogin, Credential: bfCred(nil), LoginsPerMinute: 150}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := NewBetfair(tc.opt); err == nil {
				_ = b.Close(context.Background())
				t.Fatal("want error")
			}
		})
	}
}

func TestBetfairSessionExpired(t *testing.T) {
	const restInvalid = `{"detail":{"APINGException":{"requestUUID":"x","errorCode":"INVALID_SESSION_INFORMATION","errorDetails":""},"exceptionname":"APINGException"},"faultcode":"Client","faultstring":"ANGX-0003"}`
	const rpcNoSession = `{"jsonrpc":"2.0","error":{"code":-32099,"message":"ANGX-0003","data":{"exceptionname":"APINGException","APINGException":{"errorCode":"NO_SESSION","errorDetails":"","requestUUID":"y"}}},"id":1}`
	const rpcOther = `{"jsonrpc":"2.0","error":{"code":-32099,"message":"ANGX-0006","data":{"exceptionname":"APINGException","APINGException":{"errorCode":"INVALID_INPUT_DATA"}}},"id":2}`
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   bool
	}{
		{"rest invalid session", 400, restInvalid, true},
		{"rest no session", 400, strings.Replace(restInvalid, "INVALID_SESSION_INFORMATION", "NO_SESSION", 1), true},
		{"rest account api", 400, `{"detail":{"AccountAPINGException":{"errorCode":"INVALID_SESSION_INFORMATION"},"exceptionname":"AccountAPINGException"}}`, true},
		{"rest other code", 400, strings.Replace(restInvalid, "INVALID_SESSION_INFORMATION", "TOO_MUCH_DATA", 1), false},
		{"rest wrong status", 500, restInvalid, false},
		{"rpc no session", 200, rpcNoSession, true},
		{"rpc other", 200, rpcOther, false},
		{"rpc batch", 200, "[" + rpcOther + "," + rpcNoSession + "]", true},
		{"rpc batch ok", 200, `[{"jsonrpc":"2.0","result":[],"id":1}]`, false},
		{"success", 200, `[]`, false},
		{"empty", 400, ``, false},
		{"not json", 400, `INVALID_SESSION_INFORMATION`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BetfairSessionExpired(tc.status, []byte(tc.body)); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
