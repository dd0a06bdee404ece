package doctor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/doctor"
	"github.com/keystile/keystile/internal/runexec"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

const vaultCanary = "CANARY-doctor-vault-value-91b2c3"

// stubServer stands in for the admin API (the real one needs a full
// server; the CLI script tests run doctor against a real one).
type stubServer struct {
	status  admin.Status
	tokens  []admin.TokenInfo
	secrets []vault.Info
}

func (s *stubServer) Status(context.Context) (admin.Status, error) { return s.status, nil }
func (s *stubServer) ListTokens(context.Context) ([]admin.TokenInfo, error) {
	return s.tokens, nil
}
func (s *stubServer) ListSecrets(context.Context) ([]vault.Info, error) { return s.secrets, nil }

var _ doctor.Server = (*stubServer)(nil)

const procLimitsOK = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max core file size        0                    0                    bytes
Max open files            1024                 524288               files
`

const procStatus = "Name:\tkeystile\nUmask:\t0077\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\n"

type fixture struct {
	t      *testing.T
	o      doctor.Options
	srv    *stubServer
	v      *vault.Vault
	limits string
	status string
	work   string
	// auditPath is the fixture's audit log (SQLite), verified by
	// auditVerify.
	auditPath   string
	auditVerify func(context.Context) (audit.Report, error)
}

// uid is the owner the fixture's files get: ours, or 1000 when we are
// root (so that the clean fixture does not trip the root check).
func uid() int {
	if os.Getuid() == 0 {
		return 1000
	}
	return os.Getuid()
}

func (f *fixture) chown(p string) {
	if os.Getuid() == 0 {
		if err := os.Lchown(p, uid(), uid()); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) write(p, content string, mode os.FileMode) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		f.t.Fatal(err)
	}
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	ctx := context.Background()
	// Short base: unix socket paths are limited to ~100 bytes.
	base, err := os.MkdirTemp("", "kd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	f := &fixture{t: t, limits: procLimitsOK, status: procStatus}
	data := filepath.Join(base, "d")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// A real vault, as init makes it.
	db, err := sqlite.Open(ctx, filepath.Join(data, "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	if err := vault.Initialize(ctx, db.Vault(), secret.New(append([]byte(nil), root...)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(root)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	if _, err := v.Set(ctx, "dmarket-main", map[string]secret.Value{"secret": secret.FromString(vaultCanary)}, vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	f.v = v
	f.auditLog(ctx, data, v)
	f.write(filepath.Join(data, "master.key"), "not-a-real-key\n", 0o600)
	ln, err := net.Listen("unix", filepath.Join(data, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := os.Chmod(filepath.Join(data, "admin.sock"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{data, filepath.Join(data, "keystile.db"), filepath.Join(data, "master.key"), filepath.Join(data, "admin.sock")} {
		f.chown(p)
	}
	// The WAL files sqlite made: owner-only too.
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		p := filepath.Join(data, e.Name())
		if e.Type().IsRegular() {
			_ = os.Chmod(p, 0o600)
			f.chown(p)
		}
	}
	// A git work tree with an ignored .env.
	f.work = filepath.Join(base, "w")
	f.write(filepath.Join(f.work, ".gitignore"), ".env\n", 0o600)
	f.write(filepath.Join(f.work, ".env"), "API_KEY="+vaultCanary+"\n", 0o600)
	f.write(filepath.Join(f.work, ".env.example"), "API_KEY=\n", 0o600)
	f.write(filepath.Join(f.work, "bot.py"), "print('hi')\n", 0o600)
	git(t, f.work, "init", "-q")
	git(t, f.work, "add", ".")
	git(t, f.work, "commit", "-q", "-m", "bot")
	// A home with clean histories and near misses.
	home := filepath.Join(base, "h")
	f.write(filepath.Join(home, ".bash_history"), "ls\nexport API_KEY=$(cat /run/secrets/key)\nkeystile secret set dmarket-main < creds.env\necho kst_live_notatoken\n", 0o600)
	f.write(filepath.Join(home, ".zsh_history"), ": 1700000000:0;git status\n", 0o600)
	f.write(filepath.Join(home, ".local/share/fish/fish_history"), "- cmd: set -gx EDITOR vim\n", 0o600)
	cfg, err := config.Parse("keystile.yaml", []byte(`
venues:
  dmarket:
    type: dmarket
    credential: dmarket-main
    base_url: https://api.dmarket.com
    tls:
      min_version: "1.3"
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.srv = &stubServer{
		status: admin.Status{PID: 4242, DataDir: data, Gateway: "127.0.0.1:7878"},
		tokens: []admin.TokenInfo{{ID: "tk1", Name: "bot", State: "active", Scopes: []string{"market.read", "order.*"}, ExpiresAt: now.Add(24 * time.Hour)},
			{ID: "tk0", Name: "old", State: "revoked", Scopes: []string{"wallet.withdraw"}, ExpiresAt: now.Add(9999 * time.Hour)}},
		secrets: []vault.Info{{Name: "dmarket-main", State: vault.StateActive, RotatedAt: now.Add(-10 * 24 * time.Hour)},
			{Name: "old", State: vault.StateRevoked, RotatedAt: now.Add(-1000 * 24 * time.Hour)}},
	}
	f.o = doctor.Options{
		DataDir: data, Config: cfg, MasterKeySource: "passphrase", Home: home, WorkDir: f.work, UID: uid(),
		Server: f.srv, Vault: v,
		ReadProc: func(pid int, name string) ([]byte, error) {
			if pid != 4242 {
				return nil, os.ErrNotExist
			}
			switch name {
			case "limits":
				return []byte(f.limits), nil
			case "status":
				return []byte(f.status), nil
			}
			return nil, os.ErrNotExist
		},
		AuditVerify: f.auditVerify,
	}
	return f
}

func (f *fixture) run() doctor.Report {
	return doctor.Run(context.Background(), f.o)
}

// notApplicable are the checks that skip on the clean fixture, honestly.
var notApplicable = map[string]string{
	"masterkey.file.permissions": "the clean fixture uses a passphrase, so there is no key file",
}

func TestClean(t *testing.T) {
	f := newFixture(t)
	rep := f.run()
	for _, c := range rep.Checks {
		want := doctor.Pass
		if _, ok := notApplicable[c.ID]; ok {
			want = doctor.Skip
		}
		if c.Result != want {
			t.Errorf("%s: %s (%s), want %s", c.ID, c.Result, c.Detail, want)
		}
	}
	if len(rep.Failing(doctor.Warn)) != 0 {
		t.Errorf("Failing(warn) = %v", rep.Failing(doctor.Warn))
	}
	if rep.Summary.Pass+rep.Summary.Skip != len(rep.Checks) || len(rep.Checks) != 20 {
		t.Errorf("summary %+v for %d checks", rep.Summary, len(rep.Checks))
	}
}

// TestEachCheckFails breaks the clean fixture one way per case and checks
// that the named check, and no other, reports it.
func TestEachCheckFails(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		want   doctor.Result
		detail string
		mutate func(f *fixture)
	}{
		{"data dir group-readable", "datadir.permissions", doctor.Fail, "mode 0750", func(f *fixture) {
			os.Chmod(f.o.DataDir, 0o750)
		}},
		{"database world-readable", "datadir.permissions", doctor.Fail, "keystile.db has mode 0644", func(f *fixture) {
			os.Chmod(filepath.Join(f.o.DataDir, "keystile.db"), 0o644)
		}},
		{"data dir someone else's", "datadir.permissions", doctor.Fail, "owned by uid", func(f *fixture) {
			f.o.UID = uid() + 1
		}},
		{"key file readable by group", "masterkey.file.permissions", doctor.Fail, "mode 0640", func(f *fixture) {
			f.o.MasterKeySource = "file"
			os.Chmod(filepath.Join(f.o.DataDir, "master.key"), 0o640)
		}},
		{"key file missing", "masterkey.file.permissions", doctor.Fail, "missing", func(f *fixture) {
			f.o.MasterKeySource = "file"
			os.Remove(filepath.Join(f.o.DataDir, "master.key"))
		}},
		{"two key files, two keys", "masterkey.file.permissions", doctor.Fail, "/other/master.key", func(f *fixture) {
			f.o.MasterKeySource = "file"
			f.o.KeyFileProblem = "master key file mismatch: ... initialised with key file " + filepath.Join(f.o.DataDir, "master.key") + ", but master_key.file names /other/master.key"
		}},
		{"key file source is weakest", "masterkey.source", doctor.Warn, "weakest", func(f *fixture) {
			f.o.MasterKeySource = "file"
		}},
		{"env source", "masterkey.source", doctor.Warn, "environ", func(f *fixture) {
			f.o.MasterKeySource = "env"
		}},
		{"socket world-writable", "admin.socket.permissions", doctor.Fail, "mode 0666", func(f *fixture) {
			os.Chmod(filepath.Join(f.o.DataDir, "admin.sock"), 0o666)
		}},
		{"socket path not a socket", "admin.socket.permissions", doctor.Fail, "not a socket", func(f *fixture) {
			f.o.Socket = filepath.Join(f.o.DataDir, "master.key")
		}},
		{"running as root", "process.root", doctor.Warn, "doctor runs as root", func(f *fixture) {
			f.o.UID = 0
		}},
		{"server as root", "process.root", doctor.Warn, "pid 4242", func(f *fixture) {
			f.status = strings.Replace(procStatus, "Uid:\t1000", "Uid:\t0", 1)
		}},
		{"core dumps allowed", "server.coredumps", doctor.Fail, "unlimited", func(f *fixture) {
			f.limits = strings.Replace(procLimitsOK, "0                    0                    bytes", "unlimited            unlimited            bytes", 1)
		}},
		{"tracked .env", "workdir.envfiles", doctor.Fail, "prod.env: tracked", func(f *fixture) {
			f.write(filepath.Join(f.work, "config/prod.env"), "X=1\n", 0o600)
			git(f.t, f.work, "add", "-f", "config/prod.env")
		}},
		{"unignored .env.local", "workdir.envfiles", doctor.Warn, ".env.local: not ignored", func(f *fixture) {
			f.write(filepath.Join(f.work, ".env.local"), "X=1\n", 0o600)
		}},
		{"kst token in bash history", "history.secrets", doctor.Fail, ".bash_history:2: kst_ token", func(f *fixture) {
			f.write(filepath.Join(f.o.Home, ".bash_history"), "ls\ncurl -H 'Authorization: Bearer "+validToken(f.t)+"' localhost\n", 0o600)
		}},
		{"secret set with value in zsh history", "history.secrets", doctor.Fail, "keystile secret value on the command line", func(f *fixture) {
			f.write(filepath.Join(f.o.Home, ".zsh_history"), ": 1700000000:0;keystile --data-dir /x secret set dmarket-main secret=abc123\n", 0o600)
		}},
		{"exported secret in bash history", "history.secrets", doctor.Fail, "exported variable BINANCE_SECRET", func(f *fixture) {
			f.write(filepath.Join(f.o.Home, ".bash_history"), "export BINANCE_SECRET=hunter2hunter2\n", 0o600)
		}},
		{"fish set -gx key", "history.secrets", doctor.Fail, "exported variable STAKE_API_KEY", func(f *fixture) {
			f.write(filepath.Join(f.o.Home, ".local/share/fish/fish_history"), "- cmd: set -gx STAKE_API_KEY abcdef123456\n", 0o600)
		}},
		{"vault value in history", "history.vault-values", doctor.Fail, "value of dmarket-main field secret", func(f *fixture) {
			f.write(filepath.Join(f.o.Home, ".bash_history"), "python bot.py --secret="+vaultCanary+"\n", 0o600)
		}},
		{"gateway on all interfaces without tls", "listeners.tls", doctor.Warn, "gateway.listen 0.0.0.0:7878 is reachable from the network without TLS", func(f *fixture) {
			f.o.Config.Gateway.Listen = "0.0.0.0:7878"
		}},
		{"gateway on a LAN address without tls", "listeners.tls", doctor.Warn, "gateway.listen 192.168.1.5:7878", func(f *fixture) {
			f.o.Config.Gateway.Listen = "192.168.1.5:7878"
		}},
		{"proxy on all interfaces", "listeners.tls", doctor.Warn, "proxy.listen :7879 is reachable from the network", func(f *fixture) {
			f.o.Config.Proxy.Listen = ":7879"
		}},
		{"plain http venue", "venues.https", doctor.Warn, "venues.local.base_url is plain HTTP", func(f *fixture) {
			f.o.Config = parse(f.t, "venues:\n  local:\n    type: dmarket\n    credential: c\n    base_url: http://127.0.0.1:9000\n    sandbox: true\n    tls: {min_version: \"1.3\"}\n")
		}},
		{"query key", "venues.query-keys", doctor.Warn, "auth.scheme query", func(f *fixture) {
			f.o.Config = parse(f.t, "venues:\n  q:\n    type: generic\n    credential: c\n    base_url: https://api.example.com\n    tls: {min_version: \"1.3\"}\n    operations: [{method: GET, path: /x, op: market.read}]\n    auth: {scheme: query}\n")
		}},
		{"tls below 1.3 is noted", "venues.tls", doctor.Pass, "allows TLS 1.2", func(f *fixture) {
			f.o.Config = parse(f.t, "venues:\n  d:\n    type: dmarket\n    credential: c\n    base_url: https://api.dmarket.com\n")
		}},
		{"tls nonsense", "venues.tls", doctor.Fail, "tls.min_version", func(f *fixture) {
			v := f.o.Config.Venues["dmarket"]
			v.TLS.MinVersion = "1.0"
			f.o.Config.Venues["dmarket"] = v
		}},
		{"total timeout too long", "venues.timeouts", doctor.Warn, "timeouts.total is 10m0s", func(f *fixture) {
			v := f.o.Config.Venues["dmarket"]
			v.Timeouts.Total = 10 * time.Minute
			f.o.Config.Venues["dmarket"] = v
		}},
		{"timeout unset", "venues.timeouts", doctor.Warn, "timeouts.connect is not set", func(f *fixture) {
			v := f.o.Config.Venues["dmarket"]
			v.Timeouts.Connect = 0
			f.o.Config.Venues["dmarket"] = v
		}},
		{"long-lived token", "tokens.expiry", doctor.Warn, "token tk2 (forever)", func(f *fixture) {
			f.srv.tokens = append(f.srv.tokens, admin.TokenInfo{ID: "tk2", Name: "forever", State: "active", ExpiresAt: time.Now().Add(400 * 24 * time.Hour)})
		}},
		{"withdrawal scope", "tokens.scopes", doctor.Warn, "wallet.withdraw", func(f *fixture) {
			f.srv.tokens = append(f.srv.tokens, admin.TokenInfo{ID: "tk3", Name: "w", State: "frozen", Scopes: []string{"order.*", "wallet.withdraw"}, ExpiresAt: time.Now().Add(time.Hour)})
		}},
		{"stale credential", "credentials.rotation", doctor.Warn, "dmarket-main: last rotated", func(f *fixture) {
			f.srv.secrets[0].RotatedAt = time.Now().Add(-91 * 24 * time.Hour)
		}},
		{"per-credential period", "credentials.rotation", doctor.Warn, "(period 30 days)", func(f *fixture) {
			f.srv.secrets[0].RotatedAt = time.Now().Add(-31 * 24 * time.Hour)
			f.srv.secrets[0].RotationDays = 30
		}},
		{"compromised value is reported", "vault.compromised", doctor.Pass, "1 compromised fingerprint(s)", func(f *fixture) {
			if err := f.v.Revoke(context.Background(), "dmarket-main", true); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"exec injected a secret", "exec.injections", doctor.Warn, "BINANCE_SECRET=vault:binance#secret (command bot.py): 2 time(s)", func(f *fixture) {
			at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
			if err := runexec.RecordInjections(f.o.DataDir, []runexec.Injection{{Var: "BINANCE_SECRET", Ref: "vault:binance#secret", Command: "bot.py", At: at},
				{Var: "BINANCE_SECRET", Ref: "vault:binance#secret", Command: "bot.py", At: at.Add(time.Hour)}}); err != nil {
				f.t.Fatal(err)
			}
			f.chown(filepath.Join(f.o.DataDir, runexec.InjectionsFile))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tt.mutate(f)
			rep := f.run()
			c, ok := rep.Find(tt.id)
			if !ok {
				t.Fatalf("no check %s", tt.id)
			}
			if c.Result != tt.want || !strings.Contains(c.Detail, tt.detail) {
				t.Fatalf("%s = %s %q; want %s containing %q", tt.id, c.Result, c.Detail, tt.want, tt.detail)
			}
			if (c.Result == doctor.Warn || c.Result == doctor.Fail) && c.Fix == "" {
				t.Errorf("%s has no fix hint", tt.id)
			}
			for _, o := range rep.Checks {
				if o.ID == tt.id || tt.id == "process.root" {
					continue
				}
				if o.Result == doctor.Warn || o.Result == doctor.Fail {
					if tt.id == "datadir.permissions" && tt.name == "data dir someone else's" {
						continue // ownership is shared by several checks
					}
					if tt.id == "masterkey.file.permissions" && (o.ID == "masterkey.source" || o.ID == "datadir.permissions") {
						continue // a key file is the weakest source, and sits in the data dir
					}
					t.Errorf("side effect: %s = %s %q", o.ID, o.Result, o.Detail)
				}
			}
			assertNoSecret(t, rep)
		})
	}
}

func parse(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse("keystile.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// validToken returns a well-formed kst_live_ token: the checksum is what
// LooksValid verifies, so build one the way token.Create does.
func validToken(t *testing.T) string {
	t.Helper()
	return mintForTest(t)
}

func assertNoSecret(t *testing.T, rep doctor.Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(rep)
	for _, s := range []string{buf.String(), string(j)} {
		for _, needle := range []string{vaultCanary, "hunter2hunter2", "abc123", "abcdef123456", "kst_live_0", "kst_live_1"} {
			if strings.Contains(s, needle) {
				t.Fatalf("report reveals %q", needle)
			}
		}
	}
}

func TestSkipsWithoutServerOrVault(t *testing.T) {
	f := newFixture(t)
	f.o.Server, f.o.ServerReason = nil, "no socket"
	f.o.Vault, f.o.VaultReason = nil, "passphrase needed"
	f.o.Home, f.o.WorkDir = "", ""
	rep := f.run()
	for _, id := range []string{"server.coredumps", "tokens.expiry", "tokens.scopes", "credentials.rotation", "vault.compromised", "history.vault-values", "history.secrets", "workdir.envfiles"} {
		c, _ := rep.Find(id)
		if c.Result != doctor.Skip || c.Detail == "" {
			t.Errorf("%s = %s %q, want skip with a reason", id, c.Result, c.Detail)
		}
	}
	c, _ := rep.Find("credentials.rotation")
	if !strings.Contains(c.Detail, "passphrase needed") {
		t.Errorf("rotation skip reason %q", c.Detail)
	}
}

func TestJSONStable(t *testing.T) {
	f := newFixture(t)
	a, _ := json.Marshal(f.run())
	b, _ := json.Marshal(f.run())
	if !bytes.Equal(a, b) {
		t.Fatal("two runs on the same fixture differ")
	}
	var got struct {
		Checks  []map[string]any `json:"checks"`
		Summary map[string]int   `json:"summary"`
	}
	if err := json.Unmarshal(a, &got); err != nil {
		t.Fatal(err)
	}
	if got.Checks[0]["id"] != "datadir.permissions" || got.Checks[0]["result"] != "pass" || got.Summary["pass"] == 0 {
		t.Fatalf("unexpected JSON %s", a)
	}
}

func TestParseLevel(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{{"warn", true}, {"fail", true}, {"pass", false}, {"", false}} {
		if _, err := doctor.ParseLevel(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseLevel(%q) = %v", tt.in, err)
		}
	}
	rep := doctor.Report{Checks: []doctor.Check{{ID: "a", Result: doctor.Warn}, {ID: "b", Result: doctor.Skip}, {ID: "c", Result: doctor.Fail}}}
	if n := len(rep.Failing(doctor.Warn)); n != 2 {
		t.Errorf("Failing(warn) = %d", n)
	}
	if n := len(rep.Failing(doctor.Fail)); n != 1 {
		t.Errorf("Failing(fail) = %d", n)
	}
}

func TestLineFindings(t *testing.T) {
	tok := mintForTest(t)
	bad := tok[:len(tok)-1] + "0"
	if bad == tok {
		bad = tok[:len(tok)-1] + "1" // the token ended in 0 itself
	}
	tests := []struct {
		name, line string
		want       int
	}{
		{"token", "export KST=" + tok, 1},
		{"token with bad checksum", "x " + bad, 0},
		{"secret set inline", "keystile secret set b api_key=AKIA1234", 1},
		{"secret set from stdin", "keystile secret set b < creds", 0},
		{"secret set field without value", "keystile secret set b api_key=", 0},
		{"export secret", "export STAKE_TOKEN='abc'", 1},
		{"export reference", "export STAKE_TOKEN=$(pass show stake)", 0},
		{"export harmless", "export EDITOR=vim", 0},
		{"fish", "set -x BETFAIR_PASSWORD pw1234", 1},
		{"plain", "git commit -m 'api_key=x'", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := doctor.LineFindings(tt.line); len(got) != tt.want {
				t.Fatalf("LineFindings(%q) = %v", tt.line, got)
			}
		})
	}
}

func TestIsEnvFile(t *testing.T) {
	for name, want := range map[string]bool{".env": true, "a/.env.prod": true, "prod.env": true, ".env.example": false,
		"x/.env.sample": false, "envoy.yaml": false, ".environment": false} {
		if got := doctor.IsEnvFile(name); got != want {
			t.Errorf("IsEnvFile(%q) = %v", name, got)
		}
	}
}

func ExampleRun() {
	dir, _ := os.MkdirTemp("", "kd")
	defer os.RemoveAll(dir)
	rep := doctor.Run(context.Background(), doctor.Options{DataDir: dir, UID: os.Getuid(), MasterKeySource: "file"})
	c, _ := rep.Find("masterkey.source")
	fmt.Println(c.ID, c.Result)
	// Output: masterkey.source warn
}

func FuzzLineFindings(f *testing.F) {
	f.Add("export API_KEY=abc")
	f.Add("keystile secret set x a=b")
	f.Add("set -x A_TOKEN v kst_live_")
	f.Fuzz(func(t *testing.T, line string) {
		for _, k := range doctor.LineFindings(line) {
			// Findings name kinds, never values.
			if k != "kst_ token" && k != "keystile secret value on the command line" && !strings.HasPrefix(k, "secret in exported variable ") {
				t.Fatalf("unexpected finding %q", k)
			}
		}
	})
}

// TestListenersWithTLS: an exposed gateway with TLS, and a loopback proxy,
// pass.
func TestListenersWithTLS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *config.Config)
		detail string
	}{
		{"local ca", func(c *config.Config) { c.Gateway.Listen, c.Gateway.TLS.LocalCA = "0.0.0.0:7878", true }, "gateway on 0.0.0.0:7878 with TLS"},
		{"own certificate", func(c *config.Config) {
			c.Gateway.Listen, c.Gateway.TLS.CertFile, c.Gateway.TLS.Key = "[::]:7878", "/etc/k.pem", "file:/etc/k.key"
		}, "with TLS"},
		{"proxy on loopback", func(c *config.Config) { c.Proxy.Listen = "127.0.0.1:7879" }, "forward proxy on 127.0.0.1:7879 (loopback)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.mutate(f.o.Config)
			c, ok := f.run().Find("listeners.tls")
			if !ok || c.Result != doctor.Pass || !strings.Contains(c.Detail, tc.detail) {
				t.Fatalf("%+v", c)
			}
		})
	}
}
