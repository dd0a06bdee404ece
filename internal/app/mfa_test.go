package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

type mfaClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *mfaClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *mfaClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mfaServer is a real keystile server on a data dir, restartable, with
// the second factor's clock under the test's control.
type mfaServer struct {
	t       *testing.T
	dir     string
	yaml    string
	clock   *mfaClock
	log     *syncBuffer
	srv     *app.Server
	cancel  context.CancelFunc
	done    chan error
	client  *admin.Client
	answers []string // bodies of raw admin answers, for the leak sweep
}

func newMFAServer(t *testing.T, yaml string) *mfaServer {
	t.Helper()
	base, err := os.MkdirTemp("", "ksm") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	m := &mfaServer{t: t, dir: filepath.Join(base, "d"), yaml: yaml, log: &syncBuffer{},
		clock: &mfaClock{t: time.Now().Truncate(30 * time.Second).Add(5 * time.Second)}}
	if _, err := app.Init(context.Background(), app.Env{}, app.InitOptions{DataDir: m.dir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(func() {
		if m.srv != nil {
			if err := m.stop(); err != nil {
				t.Errorf("server: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tail(m.log.String(), 4000))
		}
	})
	return m
}

func (m *mfaServer) config() *config.Config {
	m.t.Helper()
	cfg, err := config.Parse("mfa.yaml", []byte("gateway:\n  listen: 127.0.0.1:0\nvenues:\n  bin:\n    type: binance\n    credential: binance-main\n    base_url: http://127.0.0.1:9\n    sandbox: true\n"+m.yaml))
	if err != nil {
		m.t.Fatal(err)
	}
	return cfg
}

func (m *mfaServer) start() {
	m.t.Helper()
	red := logging.NewRedactor()
	log := logging.New(m.log, logging.Options{Level: slog.LevelDebug, Format: "json", Redactor: red})
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: m.dir, Config: m.config(), Logger: log, Redactor: red, Now: m.clock.Now})
	if err != nil {
		cancel()
		m.t.Fatalf("new server: %v", err)
	}
	m.srv, m.cancel, m.done = srv, cancel, make(chan error, 1)
	go func() { m.done <- srv.Run(ctx) }()
	m.client, err = admin.NewClient(filepath.Join(m.dir, app.SocketFile))
	if err != nil {
		m.t.Fatal(err)
	}
}

func (m *mfaServer) stop() error {
	m.cancel()
	m.srv = nil
	select {
	case err := <-m.done:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("server did not stop")
	}
}

func (m *mfaServer) restart() {
	m.t.Helper()
	if err := m.stop(); err != nil {
		m.t.Fatal(err)
	}
	m.start()
}

// raw sends a request over the admin socket with second-factor headers
// and keeps the answer for the leak sweep.
func (m *mfaServer) raw(method, path, body string, hdr map[string]string) (int, string) {
	m.t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(m.dir, app.SocketFile))
	}}}
	req, _ := http.NewRequest(method, "http://keystile"+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m.answers = append(m.answers, string(b))
	return resp.StatusCode, string(b)
}

func (m *mfaServer) code(sec secret.Value) string {
	m.t.Helper()
	c, err := mfa.CodeAt(sec, m.clock.Now())
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

func errCode(err error) string {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return fmt.Sprint(err)
}

const setBody = `{"fields":{"api_key":"QUtJQQ==","secret":"c2VjcmV0LXZhbHVl"}}`

// TestE2EAdminMFA runs the second factor on a real server: enrolment,
// gated actions with codes, a replay refused before and after a restart,
// a recovery code used once, wrong codes locked out, sessions, every event
// in the durable audit log, and no secret, code or recovery code in the
// data dir, the server log, an audit record or an answer.
func TestE2EAdminMFA(t *testing.T) {
	m := newMFAServer(t, "")
	ctx := context.Background()
	c := m.client

	sec, err := mfa.NewSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	recovery, _ := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	if _, err := c.MFAEnroll(ctx, sec.Clone(), recovery); err != nil {
		t.Fatal(err)
	}
	// Pending: not gated yet.
	if st, body := m.raw("PUT", "/v1/secrets/binance-main", setBody, nil); st != 200 {
		t.Fatalf("pending enrolment gates: %d %s", st, body)
	}
	var used []string
	first := m.code(sec)
	used = append(used, first)
	if st, body := m.raw("POST", "/v1/mfa/enroll/confirm", `{"code":"`+first+`"}`, nil); st != 200 || !strings.Contains(body, `"state":"active"`) {
		t.Fatalf("confirm: %d %s", st, body)
	}

	// Gated: no factor, a code (once), its replay.
	if st, body := m.raw("PUT", "/v1/secrets/binance-main", setBody, nil); st != 401 || !strings.Contains(body, "mfa_required") {
		t.Fatalf("no factor: %d %s", st, body)
	}
	m.clock.Add(mfa.Period)
	code := m.code(sec)
	used = append(used, code)
	if st, body := m.raw("PUT", "/v1/secrets/binance-main", setBody, map[string]string{admin.HeaderMFACode: code}); st != 200 {
		t.Fatalf("with a code: %d %s", st, body)
	}
	if st, body := m.raw("POST", "/v1/tokens", `{"name":"b","venues":["bin"],"test":true,"ttl_ns":3600000000000}`, map[string]string{admin.HeaderMFACode: code}); st != 401 || !strings.Contains(body, "mfa_replay") {
		t.Fatalf("replay: %d %s", st, body)
	}
	// Wrong codes.
	for range 2 {
		if st, _ := m.raw("POST", "/v1/vault/rekey", "", map[string]string{admin.HeaderMFACode: "000000"}); st != 401 {
			t.Fatalf("wrong code: %d", st)
		}
	}
	// A recovery code, once.
	if st, body := m.raw("POST", "/v1/vault/rekey", "", map[string]string{admin.HeaderMFACode: recovery[4]}); st != 200 {
		t.Fatalf("recovery code: %d %s", st, body)
	}
	if st, _ := m.raw("POST", "/v1/vault/rekey", "", map[string]string{admin.HeaderMFACode: recovery[4]}); st != 401 {
		t.Fatalf("recovery code twice: %d", st)
	}
	// A session.
	m.clock.Add(mfa.Period)
	lc := m.code(sec)
	used = append(used, lc)
	st, body := m.raw("POST", "/v1/mfa/login", `{"code":"`+lc+`"}`, nil)
	if st != 200 {
		t.Fatalf("login: %d %s", st, body)
	}
	sess := body[strings.Index(body, mfa.SessionPrefix):][:47]
	m.answers = m.answers[:len(m.answers)-1] // the one answer that carries the session
	if st, body := m.raw("POST", "/v1/tokens", `{"name":"b","venues":["bin"],"test":true,"ttl_ns":3600000000000}`, map[string]string{admin.HeaderMFASession: sess}); st != 200 {
		t.Fatalf("with a session: %d %s", st, body)
	}
	m.answers = m.answers[:len(m.answers)-1] // it carries a kst_ token

	// Restart: the used code stays used, the session is gone.
	m.restart()
	if st, body := m.raw("POST", "/v1/mfa/login", `{"code":"`+lc+`"}`, nil); st != 401 || !strings.Contains(body, "mfa_replay") {
		t.Fatalf("replay after restart: %d %s", st, body)
	}
	if st, body := m.raw("POST", "/v1/vault/rekey", "", map[string]string{admin.HeaderMFASession: sess}); st != 401 || !strings.Contains(body, "mfa_session_invalid") {
		t.Fatalf("session after restart: %d %s", st, body)
	}
	if s, err := c.MFAStatus(ctx); err != nil || s.RecoveryCodesLeft != 9 || s.Failures != 1 {
		t.Fatalf("status after restart: %+v %v", s, err)
	}
	// Reset with a recovery code.
	if st, body := m.raw("POST", "/v1/mfa/reset", "", map[string]string{admin.HeaderMFACode: recovery[0]}); st != 200 || !strings.Contains(body, `"state":"none"`) {
		t.Fatalf("reset: %d %s", st, body)
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}

	// Every event is in the durable, verifiable audit log.
	cfg := m.config()
	r, err := app.OpenAuditReader(ctx, cfg, m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var records []audit.Record
	if err := r.Scan(ctx, 1, func(rec audit.Record) error { records = append(records, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, rec := range records {
		seen[rec.Operation+" "+rec.Rule+" "+rec.Decision] = true
		if strings.HasPrefix(rec.Operation, "admin.mfa.") && (rec.Source == "" || rec.Source == "uid:0" || strings.Contains(rec.Source, "uid:")) {
			t.Errorf("principal not HMAC'd in %s: %q", rec.Operation, rec.Source)
		}
	}
	for _, want := range []string{
		"admin.mfa.enroll mfa.pending allow", "admin.mfa.enroll mfa.enrolled allow",
		"admin.mfa.verify mfa.required deny", "admin.mfa.verify mfa.totp allow", "admin.mfa.verify mfa.replay deny",
		"admin.mfa.verify mfa.invalid_code deny", "admin.mfa.recovery_code mfa.recovery_code allow",
		"admin.mfa.login mfa.session_issued allow", "admin.mfa.verify mfa.session allow",
		"admin.mfa.verify mfa.session_invalid deny", "admin.mfa.reset mfa.reset allow",
	} {
		if !seen[want] {
			t.Errorf("no audit record %q", want)
		}
	}
	keys := auditKeys(t, m.dir, cfg)
	if rep, err := audit.Verify(ctx, r, keys.PublicKey()); err != nil || rep.Records != uint64(len(records)) {
		t.Fatalf("audit verify: %+v %v", rep, err)
	}

	// The leak sweep.
	raw, _ := base32Raw(sec)
	needles := []needle{{"totp secret", string(sec.Reveal())}, {"totp secret hex", hex.EncodeToString(raw)},
		{"totp secret base64", base64.StdEncoding.EncodeToString(raw)}, {"session", sess}}
	for i, u := range used {
		needles = append(needles, needle{fmt.Sprintf("code %d", i), `"` + u + `"`}, needle{fmt.Sprintf("code %d", i), "=" + u})
	}
	for i, rc := range recovery {
		needles = append(needles, needle{fmt.Sprintf("recovery code %d", i), rc}, needle{fmt.Sprintf("recovery code %d bare", i), strings.ReplaceAll(rc, "-", "")})
	}
	n, hits := sweepDataDir(t, m.dir, needles)
	if n < 2 || len(hits) > 0 {
		t.Fatalf("data dir (%d files): %v", n, hits)
	}
	if hits := findNeedles(m.log.String(), needles); len(hits) > 0 {
		t.Fatalf("server log: %v", hits)
	}
	for _, a := range m.answers {
		if hits := findNeedles(a, needles); len(hits) > 0 {
			t.Fatalf("answer %s: %v", a, hits)
		}
	}
	for _, rec := range records {
		if hits := findNeedles(string(rec.Raw), needles); len(hits) > 0 {
			t.Fatalf("audit record: %v", hits)
		}
	}
	if !strings.Contains(m.log.String(), "mfa.session_issued") {
		t.Fatal("the server log does not show the MFA events")
	}
}

func base32Raw(s secret.Value) ([]byte, error) {
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(string(s.Reveal()))
}

func auditKeys(t *testing.T, dir string, cfg *config.Config) audit.Keys {
	t.Helper()
	ctx := context.Background()
	db, v, err := app.OpenVault(ctx, app.Env{}, dir, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { v.Close(ctx); db.Close() }()
	k, err := app.AuditKeys(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestE2EAdminMFAOfflineReset is the break-glass path: refused while the
// server runs; with it stopped, the master key resets the second factor
// and the audit log says so.
func TestE2EAdminMFAOfflineReset(t *testing.T) {
	m := newMFAServer(t, "")
	ctx := context.Background()
	sec, _ := mfa.NewSecret(nil)
	recovery, _ := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	if _, err := m.client.MFAEnroll(ctx, sec.Clone(), recovery); err != nil {
		t.Fatal(err)
	}
	if _, err := m.client.MFAConfirm(ctx, m.code(sec)); err != nil {
		t.Fatal(err)
	}
	cfg := m.config()
	if err := app.ResetMFAOffline(ctx, app.Env{}, app.ResetMFAOptions{DataDir: m.dir, Config: cfg}); !errors.Is(err, app.ErrServerRunning) {
		t.Fatalf("offline reset while serving: %v", err)
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	if err := app.ResetMFAOffline(ctx, app.Env{}, app.ResetMFAOptions{DataDir: m.dir, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if err := app.ResetMFAOffline(ctx, app.Env{}, app.ResetMFAOptions{DataDir: m.dir, Config: cfg}); !errors.Is(err, mfa.ErrNotEnrolled) {
		t.Fatalf("second offline reset: %v", err)
	}
	m.start()
	if st, err := m.client.MFAStatus(ctx); err != nil || st.State != "none" {
		t.Fatalf("after offline reset: %+v %v", st, err)
	}
	l, _ := m.client.ListSecrets(ctx)
	for _, i := range l {
		if strings.HasPrefix(i.Name, mfa.ReservedPrefix) {
			t.Fatalf("the second factor's secret is still in the vault after the reset: %+v", l)
		}
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	r, err := app.OpenAuditReader(ctx, cfg, m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	found := false
	_ = r.Scan(ctx, 1, func(rec audit.Record) error {
		found = found || (rec.Operation == "admin.mfa.reset" && rec.Method == "OFFLINE" && rec.Path == "keystile mfa reset --offline")
		return nil
	})
	if !found {
		t.Fatal("no audit record of the offline reset")
	}
	if rep, err := audit.Verify(ctx, r, auditKeys(t, m.dir, cfg).PublicKey()); err != nil || rep.Unsigned != 0 {
		t.Fatalf("audit verify after the offline reset: %+v %v", rep, err)
	}
}

// TestE2EAdminTCPListener serves the admin API on TCP with TLS, an allow
// list and a bearer token from keystile.yaml.
func TestE2EAdminTCPListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir)
	tok, d, err := admin.NewAdminToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("admin:\n  listen: 127.0.0.1:0\n  tls_cert: %s\n  tls_key: %s\n  allow_cidrs: [127.0.0.1/32]\n  tokens:\n    - {name: laptop, sha256: %s}\n",
		certFile, keyFile, hex.EncodeToString(d[:]))
	m := newMFAServer(t, yaml)
	addr := m.srv.AdminTCPAddr()
	if addr == "" {
		t.Fatal("no TCP admin listener")
	}
	rc, err := admin.NewRemoteClient("https://"+addr, tok, pool)
	if err != nil {
		t.Fatal(err)
	}
	st, err := rc.MFAStatus(context.Background())
	if err != nil || st.Principal != "token:laptop" {
		t.Fatalf("remote status: %+v %v", st, err)
	}
	other, _, _ := admin.NewAdminToken(nil)
	bad, _ := admin.NewRemoteClient("https://"+addr, other, pool)
	if _, err := bad.MFAStatus(context.Background()); errCode(err) != "unauthorized" {
		t.Fatalf("unknown token: %v", err)
	}
	if strings.Contains(m.log.String(), string(tok.Reveal())) {
		t.Fatal("admin token in the log")
	}
	// The same config without TLS off loopback does not validate.
	_, err = config.Parse("x.yaml", []byte("admin:\n  listen: 0.0.0.0:7879\n  tokens:\n    - {name: a, sha256: "+hex.EncodeToString(d[:])+"}\n"))
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("plain TCP off loopback: %v", err)
	}
}

func writeCert(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "keystile admin"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	_ = os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return cf, kf, pool
}

// TestE2EAdminMFARoutes calls every route of admin.MFARoutes on the real
// server with a second factor enrolled and none presented: each is served
// (the table names no route the server lacks, and the server's routes are
// all classified), and exactly the gated ones answer mfa_required.
func TestE2EAdminMFARoutes(t *testing.T) {
	m := newMFAServer(t, "")
	ctx := context.Background()
	sec, _ := mfa.NewSecret(nil)
	recovery, _ := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	if _, err := m.client.MFAEnroll(ctx, sec.Clone(), recovery); err != nil {
		t.Fatal(err)
	}
	if _, err := m.client.MFAConfirm(ctx, m.code(sec)); err != nil {
		t.Fatal(err)
	}
	m.clock.Add(mfa.Period)
	m.client.SetMFA(admin.ClientMFA{Code: m.code(sec)})
	if _, err := m.client.SetSecret(ctx, "binance-main", admin.SetSecretRequest{Fields: map[string][]byte{"api_key": []byte("k"), "secret": []byte("s")}}); err != nil {
		t.Fatal(err)
	}
	tok, err := m.client.CreateToken(ctx, admin.CreateTokenRequest{Name: "ro", Venues: []string{"bin"}, Scopes: []string{"market.read"}, Test: true, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{
		"PUT " + admin.PathSecrets + "/{name}":       setBody,
		"POST " + admin.PathTokens:                   `{"name":"n","venues":["bin"],"test":true,"ttl_ns":3600000000000}`,
		"POST " + admin.PathTokens + "/{id}/rotate":  `{"grace_ns":0}`,
		"POST " + admin.PathOAuth + "/{venue}/login": `{}`,
		"POST " + admin.PathMFA + "/enroll":          `{"secret":"","recovery_codes":[]}`,
		"POST " + admin.PathMFA + "/enroll/confirm":  `{"code":"000000"}`,
		"POST " + admin.PathMFA + "/login":           `{"code":"000000"}`,
		// A panic with a body that is refused (no reason): its answer
		// shows it was not gated without engaging anything.
		"POST " + admin.PathPanic: `{"reason":""}`,
	}
	for route, rt := range admin.MFARoutes() {
		method, path, _ := strings.Cut(route, " ")
		id := tok.Info.ID
		if strings.HasSuffix(route, "/rotate") {
			// Rotating needs a token with trading scopes to be gated:
			// the read-only one passes, which is checked below.
			continue
		}
		path = strings.NewReplacer("{name}", "binance-main", "{id}", id, "{venue}", "bin", "{kind}", "throttle", "{subject}", id).Replace(path)
		b := bodies[route]
		if b == "" && method == http.MethodPost {
			b = "{}"
		}
		st, body := m.raw(method, path, b, nil)
		gated := st == http.StatusUnauthorized && strings.Contains(body, `"mfa_required"`)
		if want := rt.Class == admin.MFAAlways || rt.Class == admin.MFAConditional; gated != want {
			t.Errorf("%s (%s): %d %s", route, rt.Class, st, body)
		}
		if st == http.StatusNotFound && strings.Contains(body, "404 page not found") || strings.Contains(body, "unclassified_route") {
			t.Errorf("%s is not served: %d %s", route, st, body)
		}
	}
	ro, err := m.client.CreateToken(ctx, admin.CreateTokenRequest{Name: "ro2", Venues: []string{"bin"}, Scopes: []string{"market.read"}, Test: true, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if st, body := m.raw("POST", admin.PathTokens+"/"+ro.Info.ID+"/rotate", `{"grace_ns":0}`, nil); st != 200 {
		t.Errorf("rotating a read-only token: %d %s", st, body)
	}
}
