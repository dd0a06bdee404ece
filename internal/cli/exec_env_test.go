package cli

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const execYAML = `gateway:
  listen: 127.0.0.1:0
tokens:
  default_ttl: 10m
  max_ttl: 30m
venues:
  binance:
    type: binance
    credential: binance-main
    base_url: https://api.binance.com
  sandbox:
    type: bybit
    credential: bybit-sandbox
    base_url: http://127.0.0.1:9
    sandbox: true
policies:
  scalper:
    operations: ["market.read", "order.*"]
`

const (
	execCanarySecret = "CANARY-exec-parent-secret-91d2"
	execCanaryMaster = "CANARY-exec-parent-master-77ab"
)

// execRun runs `keystile exec` in this process against s, the child (a
// real sh) inheriting parent.
func (s *liveServer) execRun(t *testing.T, parent []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"exec"}, args...), IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return s.env[k] }, Environ: func() []string { return parent }})
	return code, out.String(), errb.String()
}

func execParent() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=/home/bot", "PLAIN_VAR=visible", "BINANCE_API_SECRET=" + execCanarySecret,
		"KEYSTILE_MASTER_KEY=" + execCanaryMaster, "FOO_TOKEN=foo-token-value", "LEGACY=kst_live_someoneelses"}
}

// exec passes the child what keystile sets and the parent's harmless
// variables; variables that look like credentials stay behind unless kept.
func TestExecStripsCredentialEnv(t *testing.T) {
	s := startServer(t, execYAML)
	code, out, stderr := s.execRun(t, execParent(), "--venue", "binance", "--", "sh", "-c", "env")
	if code != 0 {
		t.Fatalf("exec: exit %d: %s", code, stderr)
	}
	env := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{"PATH=" + os.Getenv("PATH"), "HOME=/home/bot", "PLAIN_VAR=visible", "KEYSTILE_TOKEN=[REDACTED]"} {
		if !slices.Contains(env, want) {
			t.Errorf("child lacks %s", want)
		}
	}
	for _, gone := range []string{"BINANCE_API_SECRET=", "KEYSTILE_MASTER_KEY=", "FOO_TOKEN=", "LEGACY="} {
		if strings.Contains(out, gone) {
			t.Errorf("child got %s...", gone)
		}
	}
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "KEYSTILE_URL=http://127.0.0.1:") }) {
		t.Errorf("child lacks KEYSTILE_URL: %q", env)
	}
	if !strings.Contains(stderr, "not passing 4 inherited variables that look like credentials: BINANCE_API_SECRET, FOO_TOKEN, KEYSTILE_MASTER_KEY, LEGACY (pass one with --keep-env NAME)") {
		t.Errorf("stderr does not name the stripped variables: %s", stderr)
	}
	if strings.Contains(out+stderr, "CANARY") {
		t.Fatal("a parent secret reached the output")
	}

	// --keep-env passes one (and only that one).
	code, out, stderr = s.execRun(t, execParent(), "--venue", "binance", "--keep-env", "FOO_TOKEN", "--", "sh", "-c", "env")
	if code != 0 {
		t.Fatalf("exec --keep-env: exit %d: %s", code, stderr)
	}
	if env := strings.Split(out, "\n"); !slices.Contains(env, "FOO_TOKEN=foo-token-value") || strings.Contains(out, "BINANCE_API_SECRET") {
		t.Fatalf("--keep-env FOO_TOKEN: child env %q", env)
	}

	// The master key is never passed; a variable exec sets is not kept.
	for _, name := range []string{"KEYSTILE_MASTER_KEY", "KEYSTILE_TOKEN", "1BAD"} {
		code, out, stderr = s.execRun(t, execParent(), "--venue", "binance", "--keep-env", name, "--", "sh", "-c", "env")
		if code != ExitUsage || out != "" {
			t.Errorf("--keep-env %s: exit %d, want %d; stdout %q stderr %s", name, code, ExitUsage, out, stderr)
		}
	}
}

// exec mints its token with token create's flags: the scopes, policy, CIDRs,
// test binding and TTL reach the minted token (seen through the admin API).
func TestExecMintFlags(t *testing.T) {
	s := startServer(t, execYAML)
	ctx := context.Background()
	code, _, stderr := s.execRun(t, execParent(), "--venue", "sandbox", "--test", "--policy", "scalper", "--scope", "market.read",
		"--scope", "order.read", "--cidr", "127.0.0.1", "--cidr", "::1/128", "--ttl", "20m", "--", "sh", "-c", "exit 0")
	if code != 0 {
		t.Fatalf("exec: exit %d: %s", code, stderr)
	}
	l, err := s.admin.ListTokens(ctx)
	if err != nil || len(l) != 1 {
		t.Fatalf("tokens %+v, %v", l, err)
	}
	tok := l[0]
	if tok.Name != "exec sh" || !tok.Test || tok.Policy != "scalper" || strings.Join(tok.Scopes, ",") != "market.read,order.read" ||
		strings.Join(tok.CIDRs, ",") != "127.0.0.1/32,::1/128" || strings.Join(tok.Venues, ",") != "sandbox" ||
		tok.ExpiresAt.Sub(tok.CreatedAt) != 20*time.Minute || tok.State != "revoked" {
		t.Fatalf("minted token %+v", tok)
	}

	// Without --ttl the run's hour is shortened to tokens.max_ttl (30m)
	// rather than refused.
	if code, _, stderr := s.execRun(t, execParent(), "--venue", "binance", "--", "sh", "-c", "exit 0"); code != 0 {
		t.Fatalf("exec without --ttl: exit %d: %s", code, stderr)
	}
	l, _ = s.admin.ListTokens(ctx)
	for _, tok := range l {
		if tok.Venues[0] == "binance" && tok.ExpiresAt.Sub(tok.CreatedAt) != 30*time.Minute {
			t.Fatalf("exec without --ttl: lifetime %s, want 30m", tok.ExpiresAt.Sub(tok.CreatedAt))
		}
	}
	// An explicit TTL above the maximum, an unknown venue or policy are the
	// server's refusals; nothing runs.
	for _, args := range [][]string{{"--ttl", "2h"}, {"--venue", "binanse"}, {"--policy", "nosuch"}} {
		code, out, stderr := s.execRun(t, execParent(), append(args, "--", "sh", "-c", "echo ran")...)
		if code != ExitFailure || strings.Contains(out, "ran") {
			t.Errorf("%v: exit %d, stdout %q, stderr %s", args, code, out, stderr)
		}
	}
	// Bad mint flags, and mint flags with --token-from-env, are usage errors.
	for _, args := range [][]string{{"--cidr", "nope"}, {"--scope", "wallet.*"}, {"--token-from-env", "BOT_TOKEN", "--test"}} {
		code, out, stderr := s.execRun(t, execParent(), append(args, "--", "sh", "-c", "echo ran")...)
		if code != ExitUsage || strings.Contains(out, "ran") {
			t.Errorf("%v: exit %d, want %d; stdout %q, stderr %s", args, code, ExitUsage, out, stderr)
		}
	}
	l, _ = s.admin.ListTokens(ctx)
	if len(l) != 2 {
		t.Fatalf("%d tokens, want 2 (the refused runs mint none)", len(l))
	}
	for _, tok := range l {
		if tok.State != "revoked" {
			t.Errorf("token %s is %s after its run", tok.ID, tok.State)
		}
	}
}
