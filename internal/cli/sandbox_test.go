package cli

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
)

// freePortBase returns a port base whose ten ports are free now.
func freePortBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 21000 + rand.IntN(30000) // #nosec G404 -- test port choice
		ok := true
		for i := range sandbox.AllVenues() {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			_ = ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port base")
	return 0
}

// background runs a long-lived command (sandbox, serve) until the test
// ends.
func background(t *testing.T, env map[string]string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, _, stderr := runCtx(ctx, env, "", args...); code != 0 && ctx.Err() == nil {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("%v did not stop", args)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestSandboxConfigure: configure with the server stopped (credentials go
// straight into the vault), serve, and a kst_test_ token reaches the
// emulators through the gateway; then configure another venue while the
// server runs (through its admin API; it reloads the file), refuse a
// conflicting venue unless forced, and name a taken port.
func TestSandboxConfigure(t *testing.T) {
	base, err := os.MkdirTemp("", "ks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "d")
	env := map[string]string{"KEYSTILE_DATA_DIR": dir, "HOME": base}
	if code, _, stderr := run(t, env, "", "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	cfgFile := filepath.Join(dir, "keystile.yaml")
	starter, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	const mine = "# my policies, kept as they are\npolicies:\n  small:\n    max_notional: \"100 USDT\"\n"
	file := strings.Replace(string(starter), "listen: 127.0.0.1:7878", "listen: 127.0.0.1:0", 1) + mine
	if err := os.WriteFile(cfgFile, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := freePortBase(t)
	port := strconv.Itoa(pb)

	// 1. Configure with the server stopped.
	background(t, env, "sandbox", "--configure", "--port-base", port, "--venues", "binance,kraken")
	waitFor(t, "the venues in the config file", func() bool {
		b, _ := os.ReadFile(cfgFile)
		return strings.Contains(string(b), "credential: sandbox-kraken")
	})
	b, _ := os.ReadFile(cfgFile)
	if !strings.HasPrefix(string(b), file) {
		t.Fatalf("the rest of the file changed:\n%s", b)
	}
	if !strings.Contains(string(b), "base_url: http://127.0.0.1:"+strconv.Itoa(pb+5)) {
		t.Errorf("binance not on port base+5:\n%s", b)
	}

	// 2. Serve: the configured venues and their credentials are there.
	background(t, env, "serve")
	waitSocket(t, filepath.Join(dir, "admin.sock"))
	var st struct {
		Gateway string `json:"gateway"`
		Venues  []struct {
			ID                string `json:"id"`
			Mode              string `json:"mode"`
			CredentialPresent bool   `json:"credential_present"`
		} `json:"venues"`
	}
	status := func() {
		t.Helper()
		code, out, stderr := run(t, env, "", "status", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status: %d %s", code, stderr)
		}
	}
	status()
	if len(st.Venues) != 2 || !st.Venues[0].CredentialPresent || st.Venues[0].Mode != "sandbox" {
		t.Fatalf("venues: %+v", st.Venues)
	}
	mint := func(venue string, test bool) string {
		t.Helper()
		args := []string{"token", "create", "--name", "try-" + venue, "--venue", venue, "--json"}
		if test {
			args = append(args, "--test")
		}
		code, out, stderr := run(t, env, "", args...)
		var m struct {
			Token string `json:"token"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("token create: %d %s", code, stderr)
		}
		return m.Token
	}
	call := func(tok, method, path, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, "http://"+st.Gateway+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(rb)
	}
	tb := mint("binance", true)
	if code, body := call(tb, "GET", "/binance/api/v3/account", ""); code != 200 || !strings.Contains(body, "balances") {
		t.Errorf("binance through the gateway: %d %s", code, body)
	}
	tk := mint("kraken", true)
	if code, body := call(tk, "POST", "/kraken/0/private/Balance", "x=1"); code != 200 || strings.Contains(body, `"E`) {
		t.Errorf("kraken through the gateway: %d %s", code, body)
	}
	if code, _ := call(mint("binance", false), "GET", "/binance/api/v3/account", ""); code != http.StatusForbidden {
		t.Errorf("a live token reached a sandbox venue: %d", code)
	}

	// 3. Another venue while the server runs: stored through the admin
	// API, and the server reloads the file.
	background(t, env, "sandbox", "--configure", "--port-base", port, "--venues", "okx")
	waitFor(t, "okx served", func() bool {
		status()
		return len(st.Venues) == 3 && st.Venues[2].ID == "okx" && st.Venues[2].CredentialPresent
	})
	if code, body := call(mint("okx", true), "GET", "/okx/api/v5/account/balance", ""); code != 200 {
		t.Errorf("okx through the gateway: %d %s", code, body)
	}

	// 4. A taken port is named; a venue configured otherwise is refused.
	code, _, stderr := run(t, env, "", "sandbox", "--port-base", port, "--venues", "binance")
	if code != ExitFailure || !strings.Contains(stderr, "binance needs 127.0.0.1:"+strconv.Itoa(pb+5)) || !strings.Contains(stderr, "--port-base") {
		t.Errorf("port taken: exit %d: %s", code, stderr)
	}
	other := strconv.Itoa(freePortBase(t))
	code, _, stderr = run(t, env, "", "sandbox", "--configure", "--port-base", other, "--venues", "bybit,binance")
	if code != ExitUsage || !strings.Contains(stderr, "already configured with other settings: binance") {
		t.Errorf("conflict: exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(cfgFile); strings.Contains(string(b), "bybit") {
		t.Error("a refused configure changed the file")
	}
	if code, _, stderr := run(t, env, "", "secret", "show", "sandbox-bybit"); code == 0 {
		t.Errorf("a refused configure stored a credential: %s", stderr)
	}
	otherBase, _ := strconv.Atoi(other)
	background(t, env, "sandbox", "--configure", "--port-base", other, "--venues", "bybit,binance", "--force")
	waitFor(t, "binance replaced", func() bool {
		b, _ := os.ReadFile(cfgFile)
		return strings.Contains(string(b), "base_url: http://127.0.0.1:"+strconv.Itoa(otherBase+5)) && strings.Contains(string(b), "sandbox-bybit")
	})
	if b, _ := os.ReadFile(cfgFile); !strings.Contains(string(b), mine) || strings.Count(string(b), "  binance:\n") != 1 {
		t.Errorf("forced replace:\n%s", b)
	}
	if code, _, stderr := run(t, env, "", "sandbox", "--force"); code != ExitUsage {
		t.Errorf("--force alone: %d %s", code, stderr)
	}
	if code, _, stderr := run(t, env, "", "sandbox", "--configure", "--tls"); code != ExitUsage {
		t.Errorf("--configure --tls: %d %s", code, stderr)
	}
}
