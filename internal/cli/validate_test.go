package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
)

// liveServer is a real keystile server (init, then app.NewServer on the
// data dir, as `keystile serve` runs it) with the given keystile.yaml.
type liveServer struct {
	env   map[string]string
	dir   string
	admin *admin.Client
}

func startServer(t *testing.T, yaml string) *liveServer {
	t.Helper()
	// Short paths: unix socket paths are limited to ~100 bytes.
	root, err := os.MkdirTemp("", "ks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	cfgPath := filepath.Join(root, "ks.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "d")
	env := map[string]string{"KEYSTILE_DATA_DIR": dir, "KEYSTILE_CONFIG": cfgPath, "HOME": root}
	if code, _, stderr := run(t, env, "", "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	getenv := func(k string) string { return env[k] }
	cfg, file, err := app.LoadConfig(cfgPath, getenv, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := app.NewServer(ctx, app.Env{Getenv: getenv}, app.ServerOptions{ConfigPath: file, DataDir: dir, Config: cfg,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	c, err := admin.NewClient(filepath.Join(dir, app.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	return &liveServer{env: env, dir: dir, admin: c}
}

// cli runs the command line against the server.
func (s *liveServer) cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return run(t, s.env, stdin, args...)
}

func apiStatus(err error) (int, string) {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Status, ae.Code
	}
	return 0, ""
}

const validateYAML = `gateway:
  listen: 127.0.0.1:0
tokens:
  default_ttl: 1h
  max_ttl: 48h
venues:
  binance:
    type: binance
    credential: binance-main
    base_url: https://api.binance.com
  okx:
    type: okx
    credential: okx-main
    base_url: https://www.okx.com
  betfair:
    type: betfair
    credential: bf
    base_url: https://api.betfair.com
  betfair-pw:
    type: betfair
    credential: bf-pw
    login: login
    base_url: https://api.betfair.com
  gen:
    type: generic
    credential: gen
    base_url: https://api.example.com
    auth:
      scheme: header
    operations:
      - {method: GET, path: /v1/*, op: market.read}
`

// secret set checks the fields of a credential against every venue that
// signs with it, on the server: from the CLI and from the admin API.
func TestSecretSetChecksVenueFields(t *testing.T) {
	s := startServer(t, validateYAML)
	for _, tc := range []struct {
		name, cred, stdin string
		want              []string // in stderr; empty: accepted
	}{
		{"binance junk", "binance-main", "foo=CANARY-junk-1\n",
			[]string{`credential "binance-main" does not fit`, "venue binance (type binance)", "missing api_key, secret (or private_key)", "unknown foo"}},
		{"binance typo", "binance-main", "api_key=k-1\napi_secret=CANARY-typo-2\n",
			[]string{"missing secret (or private_key)", "unknown api_secret"}},
		{"binance near miss", "binance-main", "api_key=k-1\nsecrets=CANARY-typo-3\n",
			[]string{"unknown secrets (did you mean secret?)"}},
		{"okx without passphrase", "okx-main", "api_key=k\nsecret=CANARY-okx-4\n", []string{"missing passphrase"}},
		{"betfair certlogin without cert", "bf", "app_key=a\nusername=u\npassword=CANARY-bf-5\n", []string{"missing client_cert, client_key"}},
		{"generic header key field", "gen", "token=CANARY-gen-6\n", []string{"missing api_key", "unknown token"}},
		{"binance hmac", "binance-main", "api_key=k-1\nsecret=CANARY-ok-7\n", nil},
		{"binance ed25519", "binance-main", "api_key=k-1\nprivate_key=CANARY-ok-8\n", nil},
		{"okx", "okx-main", "api_key=k\nsecret=s-123\npassphrase=p-123\n", nil},
		{"betfair password login", "bf-pw", "app_key=a\nusername=u\npassword=CANARY-ok-9\n", nil},
		{"generic", "gen", "api_key=CANARY-ok-10\n", nil},
		{"no venue uses it", "spare", "anything=CANARY-ok-11\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := s.admin.ShowSecret(context.Background(), tc.cred)
			code, _, stderr := s.cli(t, tc.stdin, "secret", "set", tc.cred)
			if strings.Contains(stderr, "CANARY") {
				t.Fatalf("stderr echoes a value: %s", stderr)
			}
			if tc.want == nil {
				if code != ExitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				return
			}
			if code != ExitFailure {
				t.Fatalf("exit %d, want %d; stderr %s", code, ExitFailure, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			after, _ := s.admin.ShowSecret(context.Background(), tc.cred)
			if after.CurrentVersion != before.CurrentVersion {
				t.Fatalf("a refused set made version %d (was %d)", after.CurrentVersion, before.CurrentVersion)
			}
		})
	}
	// The admin API refuses it itself, for every client.
	_, err := s.admin.SetSecret(context.Background(), "binance-main", admin.SetSecretRequest{Fields: map[string][]byte{"foo": []byte("bar-CANARY")}})
	if st, code := apiStatus(err); st != http.StatusBadRequest || code != "invalid" || !strings.Contains(err.Error(), "missing api_key") || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("admin API set = %d %s %v, want 400 invalid naming the fields", st, code, err)
	}
	_, err = s.admin.SetSecret(context.Background(), "binance-main", admin.SetSecretRequest{MustExist: true, Fields: map[string][]byte{"api_key": []byte("k")}})
	if st, _ := apiStatus(err); st != http.StatusBadRequest {
		t.Fatalf("admin API rotate without secret = %v, want 400", err)
	}
}

// secret rm of a credential a configured venue signs with needs --force
// (a usage error otherwise); the admin API answers 409 in_use.
func TestSecretRmInUseNeedsForce(t *testing.T) {
	s := startServer(t, validateYAML)
	ctx := context.Background()
	if code, _, stderr := s.cli(t, "api_key=k\nsecret=s-1234\n", "secret", "set", "binance-main"); code != 0 {
		t.Fatalf("set: %s", stderr)
	}
	if code, _, stderr := s.cli(t, "x=y-1234\n", "secret", "set", "spare"); code != 0 {
		t.Fatalf("set: %s", stderr)
	}
	if code, _, stderr := s.cli(t, "", "token", "create", "--name", "bot", "--venue", "binance"); code != 0 {
		t.Fatalf("token create: %s", stderr)
	}
	code, _, stderr := s.cli(t, "", "secret", "rm", "binance-main")
	if code != ExitUsage || !strings.Contains(stderr, "used by venue binance (1 live token reaches it)") || !strings.Contains(stderr, "--force") {
		t.Fatalf("rm in use: exit %d, stderr %s", code, stderr)
	}
	if _, err := s.admin.ShowSecret(ctx, "binance-main"); err != nil {
		t.Fatalf("the refused rm removed it: %v", err)
	}
	if st, code := apiStatus(s.admin.DeleteSecret(ctx, "binance-main")); st != http.StatusConflict || code != "in_use" {
		t.Fatalf("admin API delete in use = %d %s, want 409 in_use", st, code)
	}
	if code, _, stderr := s.cli(t, "", "secret", "rm", "binance-main", "--force"); code != 0 {
		t.Fatalf("rm --force: exit %d: %s", code, stderr)
	}
	if _, err := s.admin.ShowSecret(ctx, "binance-main"); err == nil {
		t.Fatal("rm --force left the credential")
	}
	if code, _, stderr := s.cli(t, "", "secret", "rm", "spare"); code != 0 {
		t.Fatalf("rm of an unused credential: exit %d: %s", code, stderr)
	}
}

// token create refuses a venue the server is not configured with, and a
// TTL above tokens.max_ttl, on the server.
func TestTokenCreateRefusesUnknownVenueAndLongTTL(t *testing.T) {
	s := startServer(t, validateYAML)
	ctx := context.Background()
	code, _, stderr := s.cli(t, "", "token", "create", "--name", "bot", "--venue", "binanse")
	if code != ExitFailure || !strings.Contains(stderr, `no venue "binanse" in the configuration (did you mean "binance"? venues: betfair, betfair-pw, binance, gen, okx)`) {
		t.Fatalf("unknown venue: exit %d, stderr %s", code, stderr)
	}
	_, err := s.admin.CreateToken(ctx, admin.CreateTokenRequest{Name: "bot", Venues: []string{"binance", "nosuch"}})
	if st, c := apiStatus(err); st != http.StatusBadRequest || c != "invalid" || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("admin API unknown venue = %v", err)
	}
	code, _, stderr = s.cli(t, "", "token", "create", "--name", "bot", "--venue", "binance", "--ttl", "72h")
	if code != ExitFailure || !strings.Contains(stderr, "ttl 72h0m0s is above the maximum 48h0m0s") {
		t.Fatalf("ttl above max: exit %d, stderr %s", code, stderr)
	}
	if l, _ := s.admin.ListTokens(ctx); len(l) != 0 {
		t.Fatalf("refused creates minted %d tokens", len(l))
	}
	code, _, stderr = s.cli(t, "", "token", "create", "--name", "bot", "--venue", "binance", "--ttl", "48h", "--json")
	if code != 0 {
		t.Fatalf("ttl = max: exit %d: %s", code, stderr)
	}
	l, _ := s.admin.ListTokens(ctx)
	if len(l) != 1 || l[0].ExpiresAt.Sub(l[0].CreatedAt) != 48*time.Hour {
		t.Fatalf("tokens %+v", l)
	}
	// Bad flags are usage errors before the server is asked.
	for _, args := range [][]string{{"--cidr", "10.0.0.300"}, {"--scope", "wallet.*"}, {"--ttl", "-1h"}} {
		code, _, stderr = s.cli(t, "", append([]string{"token", "create", "--name", "bot", "--venue", "binance"}, args...)...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, ExitUsage, stderr)
		}
	}
}
