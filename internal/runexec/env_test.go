package runexec_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/runexec"
	"github.com/keystile/keystile/internal/secret"
)

func TestLooksSecret(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{"KEYSTILE_MASTER_KEY", "x", true},
		{"KEYSTILE_MFA_SESSION", "kss_x", true},
		{"KEYSTILE_TOTP", "123456", true},
		{"KEYSTILE_PASSPHRASE_FILE", "/p", true},
		{"BINANCE_API_SECRET", "x", true},
		{"BINANCE_APIKEY", "x", true},
		{"FOO_TOKEN", "x", true},
		{"okx_passphrase", "x", true},
		{"DB_PASSWORD", "x", true},
		{"GOOGLE_APPLICATION_CREDENTIALS", "/c.json", true},
		{"AUTHORIZATION", "Bearer x", true},
		{"SSH_AUTH_SOCK", "/tmp/agent", true},
		{"XAUTHORITY", "/home/u/.Xauthority", true},
		{"ED25519_PRIVATE", "x", true},
		{"BETFAIR_USERNAME", "bob", true},
		{"STAPI_CLIENT_ID", "x", true},
		{"BETFAIR_CLIENT_CERT", "/c.pem", true},
		{"COINBASE_KEY_NAME", "organizations/x", true},
		{"BOT_CONFIG", "kst_live_abc", true},
		{"DATABASE_URL", "postgres://bot:hunter2@db/x", true},
		{"PATH", "/usr/bin:/bin", false},
		{"HOME", "/home/u", false},
		{"PWD", "/srv/bot", false},
		{"USER", "u", false},
		{"USERNAME", "u", false},
		{"LANG", "C.UTF-8", false},
		{"KEYSTILE_URL", "http://127.0.0.1:0", false},
		{"KEYSTILE_DATA_DIR", "/d", false},
		{"KEYSTILE_CONFIG", "/d/keystile.yaml", false},
		{"GIT_AUTHOR_NAME", "Bob", false},
		{"BINANCE_SYMBOL", "BTCUSDT", false},
		{"DATABASE_URL", "postgres://db/x", false},
		{"PROXY", "http://user@proxy:3128", false},
		{"EMPTY", "", false},
	} {
		if got := runexec.LooksSecret(tc.name, tc.value); got != tc.want {
			t.Errorf("LooksSecret(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// childEnv runs the test binary as a child with env and returns the
// environment it saw.
func childEnv(t *testing.T, env []string) []string {
	t.Helper()
	var out, errb syncBuffer
	err := runexec.Run(context.Background(), runexec.Options{Args: []string{self(t)}, Env: append(env, "RUNEXEC_HELPER=env"), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, errb.String())
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}

var parentEnv = []string{"PATH=/usr/bin:/bin", "HOME=/home/bot", "BINANCE_API_SECRET=" + canary, "KEYSTILE_MASTER_KEY=" + canary,
	"FOO_TOKEN=foo-token-value", "OLD=kst_live_notthisone", "BOT_MODE=paper"}

// A real child gets neither the parent's credential-looking variables nor
// keystile's master key; what keystile sets itself is passed.
func TestChildEnvStripsCredentials(t *testing.T) {
	got := childEnv(t, runexec.ChildEnv(parentEnv, []runexec.Var{{Name: "KEYSTILE_TOKEN", Value: secret.FromString("kst_test_minted")}}))
	for _, gone := range []string{"BINANCE_API_SECRET=", "KEYSTILE_MASTER_KEY=", "FOO_TOKEN=", "OLD="} {
		for _, kv := range got {
			if strings.HasPrefix(kv, gone) {
				t.Errorf("child got %s", kv)
			}
		}
	}
	for _, want := range []string{"PATH=/usr/bin:/bin", "HOME=/home/bot", "BOT_MODE=paper", "KEYSTILE_TOKEN=kst_test_minted"} {
		if !slices.Contains(got, want) {
			t.Errorf("child lacks %s; got %q", want, got)
		}
	}
	if strings.Contains(strings.Join(got, "\n"), canary) {
		t.Fatal("the canary reached the child")
	}
}

func TestEnvPolicyKeep(t *testing.T) {
	env, stripped := runexec.EnvPolicy{Keep: []string{"FOO_TOKEN", "KEYSTILE_MASTER_KEY"}}.ChildEnv(parentEnv, nil)
	got := childEnv(t, env)
	if !slices.Contains(got, "FOO_TOKEN=foo-token-value") {
		t.Errorf("--keep-env FOO_TOKEN not passed: %q", got)
	}
	if strings.Contains(strings.Join(got, "\n"), canary) {
		t.Fatal("Keep passed the master key or another stripped value")
	}
	if want := []string{"BINANCE_API_SECRET", "KEYSTILE_MASTER_KEY", "OLD"}; !slices.Equal(stripped, want) {
		t.Fatalf("stripped %q, want %q", stripped, want)
	}
}
