package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

type cliClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *cliClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *cliClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mfaCLI is a real server (in this process, with a clock the test moves)
// and the CLI pointed at it.
type mfaCLI struct {
	t      *testing.T
	base   string
	dir    string
	env    map[string]string
	clock  *cliClock
	cancel context.CancelFunc
	done   chan error
	logs   *lockedBuf
	yaml   string
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newMFACLI(t *testing.T, yaml string) *mfaCLI {
	t.Helper()
	base, err := os.MkdirTemp("", "ksc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	run := filepath.Join(base, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	m := &mfaCLI{t: t, base: base, dir: filepath.Join(base, "d"), clock: &cliClock{t: time.Now().Truncate(30 * time.Second).Add(3 * time.Second)},
		logs: &lockedBuf{}, yaml: yaml}
	m.env = map[string]string{"KEYSTILE_DATA_DIR": m.dir, "HOME": base, "XDG_RUNTIME_DIR": run, "USER": "ops"}
	if _, err := app.Init(context.Background(), app.Env{}, app.InitOptions{DataDir: m.dir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "keystile.yaml"), []byte(m.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(func() {
		if m.cancel != nil {
			m.stop()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", m.logs.String())
		}
	})
	return m
}

func (m *mfaCLI) config() string {
	return "gateway:\n  listen: 127.0.0.1:0\nvenues:\n  bin:\n    type: binance\n    credential: binance-main\n    base_url: http://127.0.0.1:9\n    sandbox: true\n" + m.yaml
}

func (m *mfaCLI) start() {
	m.t.Helper()
	cfg, err := config.Parse("k.yaml", []byte(m.config()))
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewJSONHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: m.dir, Config: cfg, Logger: log, Now: m.clock.Now})
	if err != nil {
		cancel()
		m.t.Fatal(err)
	}
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- srv.Run(ctx) }()
}

func (m *mfaCLI) stop() {
	m.cancel()
	m.cancel = nil
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		m.t.Error("server did not stop")
	}
}

// run runs the CLI; extra env entries override.
func (m *mfaCLI) run(stdin string, extra map[string]string, args ...string) (int, string, string) {
	env := map[string]string{}
	for k, v := range m.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return run(m.t, env, stdin, args...)
}

func (m *mfaCLI) code(sec string) string {
	m.t.Helper()
	c, err := mfa.CodeAt(secret.New([]byte(sec)), m.clock.Now())
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

// codeFeeder is the enroll command's stdout: when the key appears, it
// answers on stdin with the code (or with wrong, if set).
type codeFeeder struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	m     *mfaCLI
	stdin *io.PipeWriter
	wrong bool
	key   string
}

var keyLine = regexp.MustCompile(`key:\s+((?:[A-Z2-7]{4} ?)+)\n`)

func (f *codeFeeder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf.Write(p)
	if f.key == "" {
		if sm := keyLine.FindStringSubmatch(f.buf.String()); sm != nil {
			f.key = strings.ReplaceAll(strings.TrimSpace(sm[1]), " ", "")
			code := f.m.code(f.key)
			if f.wrong {
				code = "000000"
			}
			go func() { _, _ = io.WriteString(f.stdin, code+"\n"); _ = f.stdin.Close() }()
		}
	}
	return len(p), nil
}

func (m *mfaCLI) enroll(wrong bool, args ...string) (int, *codeFeeder, string) {
	m.t.Helper()
	pr, pw := io.Pipe()
	f := &codeFeeder{m: m, stdin: pw, wrong: wrong}
	var errb bytes.Buffer
	code := Run(context.Background(), append([]string{"mfa", "enroll"}, args...), IO{Stdin: pr, Stdout: f, Stderr: &errb,
		Getenv: func(k string) string { return m.env[k] }})
	_ = pw.Close()
	return code, f, errb.String()
}

var recoveryLine = regexp.MustCompile(`(?m)^  ([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})$`)

func TestCLIMFA(t *testing.T) {
	m := newMFACLI(t, "")
	if code, out, errs := m.run("", nil, "mfa", "status"); code != 0 || !strings.Contains(out, "state:            none") {
		t.Fatalf("status: %d %s %s", code, out, errs)
	}

	// A wrong first code leaves the enrolment pending.
	code, f, errs := m.enroll(true, "--no-qr")
	if code != ExitFailure || !strings.Contains(errs, "not valid") || !strings.Contains(errs, "pending") {
		t.Fatalf("enroll with a wrong code: %d %s", code, errs)
	}
	if strings.Contains(f.buf.String(), "Recovery codes") {
		t.Fatal("recovery codes shown before the enrolment completed")
	}
	code, f, errs = m.enroll(false)
	out := f.buf.String()
	if code != 0 || !strings.Contains(out, "Second factor enrolled") {
		t.Fatalf("enroll: %d %s %s", code, out, errs)
	}
	for _, want := range []string{"█", "account: keystile:ops@", "otpauth://totp/keystile:ops@", "issuer=keystile"} {
		if !strings.Contains(out, want) {
			t.Errorf("enroll output lacks %q", want)
		}
	}
	sec := f.key
	var recovery []string
	for _, sm := range recoveryLine.FindAllStringSubmatch(out, -1) {
		recovery = append(recovery, sm[1])
	}
	if len(recovery) != mfa.DefaultRecoveryCodes {
		t.Fatalf("%d recovery codes shown", len(recovery))
	}
	var outputs []string // every output after enrolment, for the leak check
	do := func(want int, stdin string, extra map[string]string, args ...string) (string, string) {
		t.Helper()
		code, out, errs := m.run(stdin, extra, args...)
		outputs = append(outputs, out, errs)
		if code != want {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, code, want, out, errs)
		}
		return out, errs
	}
	if out, _ := do(0, "", nil, "mfa", "status"); !strings.Contains(out, "state:            active") || !strings.Contains(out, "10 left") {
		t.Fatalf("status: %s", out)
	}
	creds := "api_key=AKIAPUBLIC\nsecret=CANARY-cli-mfa-secret\n"

	// Without a factor (stdin is not a terminal: no prompt): refused, and
	// the message says what to do.
	if _, errs := do(1, creds, nil, "secret", "set", "binance-main"); !strings.Contains(errs, "secret.set needs a second factor") || !strings.Contains(errs, "keystile mfa login") {
		t.Fatalf("no factor: %s", errs)
	}
	// --totp, once; the same code again is a replay.
	m.clock.Add(mfa.Period)
	c1 := m.code(sec)
	do(0, creds, nil, "secret", "set", "binance-main", "--totp", c1)
	if _, errs := do(1, creds, nil, "secret", "rotate", "binance-main", "--totp", c1); !strings.Contains(errs, "already used") {
		t.Fatalf("replay: %s", errs)
	}
	// KEYSTILE_TOTP.
	m.clock.Add(mfa.Period)
	do(0, "", map[string]string{EnvTOTP: m.code(sec)}, "token", "create", "--name", "a", "--venue", "bin", "--test", "--ttl", "1h")
	// A read-only token needs nothing.
	do(0, "", nil, "token", "create", "--name", "ro", "--venue", "bin", "--test", "--ttl", "1h", "--scope", "market.read")

	// A session: login stores it 0600 under $XDG_RUNTIME_DIR/keystile.
	m.clock.Add(mfa.Period)
	out, _ = do(0, "", nil, "mfa", "login", "--totp", m.code(sec))
	if !strings.Contains(out, "Admin session until") {
		t.Fatalf("login: %s", out)
	}
	files, _ := filepath.Glob(filepath.Join(m.env["XDG_RUNTIME_DIR"], "keystile", "mfa-session-*.json"))
	if len(files) != 1 {
		t.Fatalf("session files %v", files)
	}
	if st, _ := os.Stat(files[0]); st.Mode().Perm() != 0o600 {
		t.Fatalf("session file mode %v", st.Mode())
	}
	if st, _ := os.Stat(filepath.Dir(files[0])); st.Mode().Perm() != 0o700 {
		t.Fatalf("session dir mode %v", st.Mode())
	}
	raw, _ := os.ReadFile(files[0])
	var stored struct {
		Session string `json:"session"`
	}
	_ = json.Unmarshal(raw, &stored)
	for range 2 {
		do(0, "", nil, "token", "create", "--name", "b", "--venue", "bin", "--test", "--ttl", "1h")
	}
	if out, _ := do(0, "", nil, "mfa", "status"); !strings.Contains(out, "your session:     until") {
		t.Fatalf("status with a session: %s", out)
	}
	// --env prints the session instead of storing it; KEYSTILE_MFA_SESSION
	// is then used.
	m.clock.Add(mfa.Period)
	out, _ = do(0, "", nil, "mfa", "login", "--env", "--totp", m.code(sec))
	envSess := strings.TrimPrefix(strings.TrimSpace(out), EnvMFASession+"=")
	if !strings.HasPrefix(envSess, mfa.SessionPrefix) {
		t.Fatalf("login --env: %s", out)
	}
	outputs = outputs[:len(outputs)-2]
	do(0, "", map[string]string{EnvMFASession: envSess, "XDG_RUNTIME_DIR": filepath.Join(m.base, "elsewhere")}, "vault", "rekey")

	// Logout ends it; the stored file goes.
	do(0, "", nil, "mfa", "logout")
	if files, _ := filepath.Glob(filepath.Join(m.env["XDG_RUNTIME_DIR"], "keystile", "mfa-session-*.json")); len(files) != 0 {
		t.Fatalf("session file after logout: %v", files)
	}
	do(1, "", nil, "vault", "rekey")
	// A session file left by a server restart is dropped when refused.
	m.clock.Add(mfa.Period)
	do(0, "", nil, "mfa", "login", "--totp", m.code(sec))
	m.stop()
	m.start()
	waitSocket(t, filepath.Join(m.dir, "admin.sock"))
	if _, errs := do(1, "", nil, "vault", "rekey"); !strings.Contains(errs, "expired or is not valid") {
		t.Fatalf("stale session: %s", errs)
	}
	if files, _ := filepath.Glob(filepath.Join(m.env["XDG_RUNTIME_DIR"], "keystile", "mfa-session-*.json")); len(files) != 0 {
		t.Fatalf("stale session file kept: %v", files)
	}

	// New recovery codes (gated), then reset with one of them.
	m.clock.Add(mfa.Period)
	out, _ = do(0, "", nil, "mfa", "recovery-codes", "--totp", m.code(sec))
	var fresh []string
	for _, sm := range recoveryLine.FindAllStringSubmatch(out, -1) {
		fresh = append(fresh, sm[1])
	}
	outputs = outputs[:len(outputs)-2]
	if len(fresh) != 10 {
		t.Fatalf("recovery-codes: %s", out)
	}
	if _, errs := do(1, "", nil, "mfa", "reset", "--totp", recovery[0]); !strings.Contains(errs, "not valid") {
		t.Fatalf("reset with a replaced code: %s", errs)
	}
	do(1, "", nil, "mfa", "reset", "--offline") // the server runs
	do(0, "", nil, "mfa", "reset", "--totp", strings.ToUpper(fresh[9]))
	do(0, creds, nil, "secret", "rotate", "binance-main")

	for _, o := range outputs {
		for _, n := range append(append([]string{sec, "CANARY-cli-mfa-secret", stored.Session}, recovery...), fresh...) {
			if strings.Contains(o, n) {
				t.Fatalf("output %q shows a secret or code", o)
			}
		}
	}
	for _, n := range append(append([]string{sec, stored.Session, envSess}, recovery...), fresh...) {
		if strings.Contains(m.logs.String(), n) {
			t.Fatal("the server log shows a secret, code or session")
		}
	}
}

func TestCLIMFAOfflineReset(t *testing.T) {
	m := newMFACLI(t, "")
	code, f, errs := m.enroll(false, "--no-qr")
	if code != 0 {
		t.Fatalf("enroll: %s", errs)
	}
	_ = f
	m.stop()
	if code, out, errs := m.run("", nil, "mfa", "reset", "--offline"); code != 0 || !strings.Contains(out, "Second factor removed (offline)") {
		t.Fatalf("offline reset: %d %s %s", code, out, errs)
	}
	m.start()
	waitSocket(t, filepath.Join(m.dir, "admin.sock"))
	if code, out, _ := m.run("", nil, "mfa", "status"); code != 0 || !strings.Contains(out, "none") {
		t.Fatalf("status: %s", out)
	}
}

func TestCLIAdminTokenAndRemote(t *testing.T) {
	code, out, errs := run(t, map[string]string{"HOME": t.TempDir()}, "", "admin", "token", "new", "--name", "laptop")
	if code != 0 || !regexp.MustCompile(`^ksa_[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Fatalf("admin token new: %d %q %s", code, out, errs)
	}
	tok := strings.TrimSpace(out)
	sm := regexp.MustCompile(`sha256: ([0-9a-f]{64})`).FindStringSubmatch(errs)
	if sm == nil || strings.Contains(errs, tok) {
		t.Fatalf("entry: %s", errs)
	}
	if code, _, errs := run(t, map[string]string{"HOME": t.TempDir()}, "", "admin", "token", "new", "--name", "Bad Name"); code != ExitUsage {
		t.Fatalf("bad name: %d %s", code, errs)
	}
	m := newMFACLI(t, "admin:\n  listen: 127.0.0.1:0\n  tokens:\n    - {name: laptop, sha256: "+sm[1]+"}\n")
	// The test server's TCP address: ask over the socket.
	waitSocket(t, filepath.Join(m.dir, "admin.sock"))
	addr := adminTCPAddr(t, m)
	tf := filepath.Join(m.base, "admin-token")
	if err := os.WriteFile(tf, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := map[string]string{EnvAdminURL: "http://" + addr, EnvAdminTokenFile: tf}
	if code, out, errs := m.run("", remote, "mfa", "status"); code != 0 || !strings.Contains(out, "token:laptop") {
		t.Fatalf("remote status: %d %s %s", code, out, errs)
	}
	if code, _, errs := m.run("", map[string]string{EnvAdminURL: "http://" + addr}, "mfa", "status"); code != ExitUsage || !strings.Contains(errs, EnvAdminTokenFile) {
		t.Fatalf("remote without a token: %d %s", code, errs)
	}
	if code, _, errs := m.run("", map[string]string{EnvAdminURL: "http://10.0.0.1:7879", EnvAdminToken: tok}, "mfa", "status"); code != 1 || !strings.Contains(errs, "https") {
		t.Fatalf("plain http off loopback: %d %s", code, errs)
	}
}

// adminTCPAddr finds the TCP admin listener's port from the server log.
func adminTCPAddr(t *testing.T, m *mfaCLI) string {
	t.Helper()
	re := regexp.MustCompile(`"admin_listen":"([^"]+)"`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if sm := re.FindStringSubmatch(m.logs.String()); sm != nil {
			return sm[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no admin_listen in the server log")
	return ""
}
