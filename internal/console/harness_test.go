package console_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
)

// Canary credential values: they must appear in no page, fragment, asset
// or log line of the console.
const (
	canaryKey    = "CANARYapikeyZ9q8w7e6r5t4y3u2i1o0pQWERTYzxcvbnmASDFGHJKLqwertyuio"
	canarySecret = "CANARYsecretM1n2b3v4c5x6z7l8k9j0hGFDSA"
)

// testClock is the second factor's clock: codes are made for it, and it
// moves one TOTP period per code so that no code is a replay.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) next() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(mfa.Period)
	return c.t
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rig is a real keystile server with the console on, in front of the
// Binance emulator, with a second factor enrolled.
type rig struct {
	t        *testing.T
	srv      *app.Server
	dataDir  string
	gw       string
	url      string // console base URL
	adminTok string // the ksa_ token that logs in
	admin    *admin.Client
	clock    *testClock
	totp     secret.Value
	log      *syncBuffer
	cancel   context.CancelFunc
	done     chan error
}

const rigPolicy = `policies:
  scalper:
    venues: [binance]
    operations: ["market.read", "account.read", "order.*"]
    instruments:
      allow: ["BTCUSDT"]
    max_notional: "100 USDT"
    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000 USDT"
`

type rigOptions struct {
	noMFA bool
	extra string // YAML appended under console:
}

func startRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, cancel: cancel, log: &syncBuffer{}, clock: &testClock{t: time.Now().Truncate(mfa.Period)}}
	sb, err := sandbox.Start(context.Background(), sandbox.Options{TLS: true, Venues: []string{sandbox.VenueBinance},
		Credentials: map[string]map[string]string{sandbox.VenueBinance: {"api_key": canaryKey, "secret": canarySecret}}})
	if err != nil {
		cancel()
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	t.Cleanup(r.stop)
	tmp := t.TempDir()
	r.dataDir = filepath.Join(tmp, "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: r.dataDir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, sb.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, digest, err := admin.NewAdminToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.adminTok = string(tok.Reveal())
	info := sb.Info()
	yml := fmt.Sprintf(`log:
  level: debug
gateway:
  listen: 127.0.0.1:0
tokens:
  default_ttl: 1h
  max_ttl: 24h
audit:
  checkpoint_every: 5
admin:
  tokens:
    - {name: ops, sha256: %s}
console:
  listen: 127.0.0.1:0
%svenues:
  binance:
    type: binance
    credential: binance-main
    base_url: %s
    sandbox: true
    tls:
      ca_file: %q
%s`, hex.EncodeToString(digest[:]), o.extra, info.Venues[sandbox.VenueBinance].BaseURL, caFile, rigPolicy)
	cfg, err := config.Parse("rig.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	red := logging.NewRedactor()
	log := logging.New(r.log, logging.Options{Level: slog.LevelDebug, Format: "json", Redactor: red})
	r.srv, err = app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: r.dataDir, Config: cfg, Logger: log, Redactor: red, Now: r.clock.Now})
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	r.done = make(chan error, 1)
	go func() { r.done <- r.srv.Run(ctx) }()
	r.gw, r.url = "http://"+r.srv.GatewayAddr(), r.srv.ConsoleURL()
	if r.admin, err = admin.NewClient(filepath.Join(r.dataDir, app.SocketFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.SetSecret(ctx, "binance-main", admin.SetSecretRequest{Fields: map[string][]byte{"api_key": []byte(canaryKey), "secret": []byte(canarySecret)}}); err != nil {
		t.Fatalf("store credential: %v", err)
	}
	if !o.noMFA {
		r.totp, err = mfa.NewSecret(nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
		if _, err := r.admin.MFAEnroll(ctx, r.totp.Clone(), rec); err != nil {
			t.Fatalf("enroll: %v", err)
		}
		if _, err := r.admin.MFAConfirm(ctx, r.code()); err != nil {
			t.Fatalf("confirm: %v", err)
		}
	}
	return r
}

// code is a fresh TOTP code (the clock moves one period first).
func (r *rig) code() string {
	r.t.Helper()
	c, err := mfa.CodeAt(r.totp, r.clock.next())
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *rig) stop() {
	r.cancel()
	if r.done == nil {
		return
	}
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("server run: %v", err)
		}
	case <-time.After(20 * time.Second):
		r.t.Error("server did not stop")
	}
	if r.t.Failed() {
		r.t.Logf("server log (tail):\n%s", tail(r.log.String(), 5000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// bot calls the gateway like a bot: a signed-looking Binance read.
func (r *rig) bot(tok string) int {
	r.t.Helper()
	req, _ := http.NewRequest("GET", r.gw+"/binance/api/v3/account", nil)
	req.Header.Set("Keystile-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("bot: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// client is a console user agent with its own cookie jar.
type client struct {
	r  *rig
	hc *http.Client
}

func (r *rig) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{r: r, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) answer {
	c.r.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.r.url+path, body)
	if err != nil {
		c.r.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(body string) string {
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// login logs in with the admin token and a fresh code; it returns the
// session's CSRF token.
func (c *client) login() string {
	c.r.t.Helper()
	a := c.do("GET", "/login", nil, nil)
	form := url.Values{"csrf": {csrfOf(a.body)}, "token": {c.r.adminTok}}
	if c.r.totp.Len() > 0 {
		form.Set("totp", c.r.code())
	}
	a = c.do("POST", "/login", form, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		c.r.t.Fatalf("log-in: %d %s", a.status, a.body)
	}
	a = c.do("GET", "/", nil, nil)
	if a.status != 200 {
		c.r.t.Fatalf("overview after log-in: %d %s", a.status, a.body)
	}
	return csrfOf(a.body)
}

// digest of the admin token, for checks that it never shows.
func digestHex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}
