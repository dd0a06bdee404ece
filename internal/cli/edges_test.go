package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const edgesConfig = `gateway:
  listen: 127.0.0.1:0
venues:
  bin:
    type: binance
    credential: binance-main
    base_url: http://127.0.0.1:9
    sandbox: true
  kr:
    type: kraken
    credential: kraken-main
    base_url: http://127.0.0.1:9
    sandbox: true
`

// repeatedPrefix returns the first "word:" prefix that appears twice in
// an error message's chain ("token: tok_x: token: not found" -> "token").
func repeatedPrefix(msg string) string {
	seen := map[string]bool{}
	for _, seg := range strings.Split(strings.TrimPrefix(strings.TrimSpace(msg), "keystile: "), ": ") {
		w := strings.TrimSpace(seg)
		if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(w) {
			continue
		}
		if seen[w] {
			return w
		}
		seen[w] = true
	}
	return ""
}

func TestRepeatedPrefix(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"keystile: token: tok_x: token: not found", "token"},
		{"keystile: config: /x: config: file not found", "config"},
		{"keystile: token: not found: tok_x", ""},
		{"keystile: scan: vault fingerprints: vault: integrity", ""},
	} {
		if got := repeatedPrefix(tc.msg); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// TestCLIEdges runs a real server and checks, through the command line:
// tokens by name, shell completion from the server, snake_case JSON from
// every --json command, and error messages without repeated prefixes.
func TestCLIEdges(t *testing.T) {
	srv := startServer(t, edgesConfig)
	env, cfgFile := srv.env, srv.env["KEYSTILE_CONFIG"]
	must := func(stdin string, args ...string) string {
		t.Helper()
		code, out, stderr := run(t, env, stdin, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return out
	}
	must("api_key=k1\nsecret=s1\n", "secret", "set", "binance-main")
	must("api_key=k2\nsecret=czE=\n", "secret", "set", "kraken-main")
	mint := func(name string) string {
		var m struct {
			Info struct {
				ID string `json:"id"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(must("", "token", "create", "--name", name, "--venue", "bin", "--json")), &m); err != nil || m.Info.ID == "" {
			t.Fatalf("token create: %v", err)
		}
		return m.Info.ID
	}
	a1, a2, b := mint("bot-a"), mint("bot-a"), mint("bot-b")

	t.Run("token by name", func(t *testing.T) {
		if out := must("", "token", "show", "bot-b"); !strings.Contains(out, b) {
			t.Errorf("show bot-b: %s", out)
		}
		code, _, stderr := run(t, env, "", "token", "revoke", "bot-a")
		if code != ExitUsage || !strings.Contains(stderr, "2 tokens are named \"bot-a\"") || !strings.Contains(stderr, a1) || !strings.Contains(stderr, a2) {
			t.Errorf("ambiguous revoke: exit %d: %s", code, stderr)
		}
		for _, id := range []string{a1, a2} {
			var ti struct {
				State string `json:"state"`
			}
			_ = json.Unmarshal([]byte(must("", "token", "show", id, "--json")), &ti)
			if ti.State != "active" {
				t.Errorf("%s after the refused revoke: %s", id, ti.State)
			}
		}
		must("", "token", "revoke", a1)
		// One bot-a left that can be used: the name now means it.
		if out := must("", "token", "revoke", "bot-a"); !strings.Contains(out, a2) || !strings.Contains(out, "revoked") {
			t.Errorf("revoke bot-a: %s", out)
		}
		code, _, stderr = run(t, env, "", "token", "show", "bot-a")
		if code != ExitUsage || !strings.Contains(stderr, a1) || !strings.Contains(stderr, a2) {
			t.Errorf("two revoked bot-a: exit %d %s", code, stderr)
		}
		if code, _, stderr := run(t, env, "", "token", "freeze", "nobody"); code != ExitFailure || !strings.Contains(stderr, `no token with id or name "nobody"`) {
			t.Errorf("unknown name: exit %d %s", code, stderr)
		}
		must("", "token", "freeze", "bot-b")
		must("", "token", "unfreeze", "bot-b")
		if out := must("", "token", "rotate", "bot-b", "--grace", "1m"); !strings.HasPrefix(out, "kst_live_") {
			t.Errorf("rotate by name: %s", out)
		}
	})

	t.Run("completion", func(t *testing.T) {
		complete := func(env map[string]string, args ...string) []string {
			t.Helper()
			code, out, _ := run(t, env, "", append([]string{cobra.ShellCompRequestCmd}, args...)...)
			if code != 0 {
				t.Fatalf("__complete %v: exit %d", args, code)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			return lines[:len(lines)-1] // the last line is the directive
		}
		if got := complete(env, "token", "show", ""); !slices.Contains(got, b) || !slices.Contains(got, "bot-b") || slices.Contains(got, "bot-a") {
			t.Errorf("token show: %q (bot-a's tokens are revoked: ids only)", got)
		}
		if got := complete(env, "token", "revoke", "bot-"); !slices.Equal(got, []string{"bot-b"}) {
			t.Errorf("token revoke bot-: %q", got)
		}
		if got := complete(env, "secret", "show", ""); !slices.Equal(got, []string{"binance-main", "kraken-main"}) {
			t.Errorf("secret show: %q", got)
		}
		if got := complete(env, "token", "create", "--venue", ""); !slices.Equal(got, []string{"bin", "kr"}) {
			t.Errorf("token create --venue: %q", got)
		}
		if got := complete(env, "oauth", "login", "k"); !slices.Equal(got, []string{"kr"}) {
			t.Errorf("oauth login: %q", got)
		}
		down := map[string]string{"KEYSTILE_DATA_DIR": filepath.Join(t.TempDir(), "none"), "HOME": t.TempDir()}
		code, out, stderr := run(t, down, "", cobra.ShellCompRequestCmd, "token", "show", "")
		if code != 0 || strings.TrimSpace(out) != ":4" || strings.Contains(stderr, "not running") {
			t.Errorf("server down: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
	})

	t.Run("json is snake_case", func(t *testing.T) {
		req := filepath.Join(t.TempDir(), "req.http")
		if err := os.WriteFile(req, []byte("POST /bin/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.01&price=100 HTTP/1.1\r\nHost: x\r\n\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"status"}, {"version"}, {"token", "list"}, {"token", "show", b}, {"secret", "list"}, {"secret", "show", "binance-main"},
			{"vault", "rekey"}, {"audit", "verify"}, {"audit", "tail"}, {"audit", "query"}, {"audit", "public-key"},
			{"doctor", "--fail-on", "fail"}, {"policy", "check", cfgFile},
			{"policy", "explain", "--token", "bot-b", "--request", req}, {"scan", t.TempDir()},
			{"service", "unit", "--binary", "/usr/local/bin/keystile"},
		} {
			code, out, stderr := run(t, env, "", append(args, "--json")...)
			if code != 0 && !(args[0] == "doctor" || args[0] == "service") {
				t.Errorf("%v --json: exit %d: %s", args, code, stderr)
				continue
			}
			n := 0
			dec := json.NewDecoder(strings.NewReader(out))
			for dec.More() {
				var v any
				if err := dec.Decode(&v); err != nil {
					t.Errorf("%v --json: not JSON: %v\n%s", args, err, out)
					break
				}
				n++
				for _, k := range nonSnakeKeys(v) {
					t.Errorf("%v --json: key %q is not snake_case", args, k)
				}
			}
			if n == 0 && args[1] != "tail" && args[1] != "query" {
				t.Errorf("%v --json printed nothing (%s)", args, stderr)
			}
		}
	})

	t.Run("errors without repeated prefixes", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing")
		for _, args := range [][]string{
			{"token", "show", "tok_nonexistent"}, {"token", "revoke", "tok_nonexistent"}, {"token", "rotate", "tok_x"},
			{"token", "create", "--name", "x", "--venue", "nope"}, {"token", "create", "--name", "x", "--venue", "bin", "--policy", "nope"},
			{"token", "create", "--name", "x", "--venue", "bin", "--ttl", "100000h"}, {"token", "create", "--name", "x", "--venue", "bin", "--scope", "wallet.*x"},
			{"secret", "show", "nope"}, {"secret", "revoke", "nope"}, {"secret", "rm", "nope"}, {"secret", "rotate", "nope"},
			{"secret", "rm", "binance-main"}, {"oauth", "login", "bin"}, {"audit", "verify", "--public-key", missing},
			{"policy", "check", missing}, {"policy", "explain", "--token", "x", "--request", missing}, {"scan", missing},
			{"hooks", "install", missing}, {"sandbox", "--venues", "nope"}, {"init"}, {"exec", "--", missing},
			{"status", "--data-dir", missing}, {"--config", missing, "status"}, {"audit", "public-key", "--format", "der"},
			{"doctor", "--json", "--format", "text"},
		} {
			code, _, stderr := run(t, env, "api_key=x\n", args...)
			if code == 0 {
				t.Errorf("%v succeeded", args)
				continue
			}
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if p := repeatedPrefix(line); p != "" {
					t.Errorf("%v: %q repeats %q", args, line, p)
				}
			}
		}
	})
}

// nonSnakeKeys returns the object keys in v (decoded JSON) that are not
// snake_case. Maps keyed by data (venue ids, operations) are objects too:
// their keys here are all lower-case words.
func nonSnakeKeys(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`).MatchString(k) {
				out = append(out, k)
			}
			out = append(out, nonSnakeKeys(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, nonSnakeKeys(e)...)
		}
	}
	return out
}

// TestOutputFlagConvention: every command that prints a result takes
// --json, and every --format flag comes with --json.
func TestOutputFlagConvention(t *testing.T) {
	// Commands whose output is not a result: a server, a child process's
	// own output, a narrative, shell code, help.
	exempt := map[string]string{
		"keystile serve": "runs the server", "keystile exec": "the child's output is the child's",
		"keystile demo": "a narrative", "keystile completion": "shell code", "keystile help": "help",
	}
	root := newRoot(&globals{io: IO{Stdin: strings.NewReader(""), Stdout: &strings.Builder{}, Stderr: &strings.Builder{}}})
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			walk(s)
		}
		path := c.CommandPath()
		for p := range exempt {
			if path == p || strings.HasPrefix(path, p+" ") {
				return
			}
		}
		if !c.Runnable() || c.Hidden {
			return
		}
		if c.Flags().Lookup("json") == nil {
			t.Errorf("%s has no --json flag", path)
		}
		if f := c.Flags().Lookup("format"); f != nil && c.Flags().Lookup("json") == nil {
			t.Errorf("%s has --format without --json", path)
		}
	}
	walk(root)
}
