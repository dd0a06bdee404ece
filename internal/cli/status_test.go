package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
)

// TestStatus runs a real server (serve, in this process) and asks it.
func TestStatus(t *testing.T) {
	base, err := os.MkdirTemp("", "ks") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "d")
	env := map[string]string{"KEYSTILE_DATA_DIR": dir, "HOME": t.TempDir()}

	// Down: exit 1, a clear message, and JSON that says so.
	code, out, stderr := run(t, env, "", "status")
	if code != ExitFailure || !strings.Contains(stderr, "server down") || !strings.Contains(stderr, "not running") {
		t.Fatalf("status, server down: %d %q %q", code, out, stderr)
	}
	code, out, _ = run(t, env, "", "status", "--json")
	var down map[string]any
	if code != ExitFailure || json.Unmarshal([]byte(out), &down) != nil || down["up"] != false || down["error"] == "" {
		t.Fatalf("status --json, server down: %d %s", code, out)
	}

	if code, _, stderr := run(t, env, "", "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	const canary = "CANARY-status-secret-5e1d"
	cfg := `gateway:
  listen: 127.0.0.1:0
  unix_socket: ` + filepath.Join(base, "gw.sock") + `
venues:
  bin:
    type: binance
    credential: binance-main
    base_url: http://127.0.0.1:9
    sandbox: true
  dm:
    type: dmarket
    credential: dmarket-main
    base_url: https://api.dmarket.com
`
	if err := os.WriteFile(filepath.Join(dir, "keystile.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		c, _, _ := runCtx(ctx, env, "", "serve")
		done <- c
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	waitSocket(t, filepath.Join(dir, "admin.sock"))

	must := func(stdin string, args ...string) string {
		t.Helper()
		code, out, stderr := run(t, env, stdin, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return out
	}
	must("api_key=AKIAPUBLIC\nsecret="+canary+"\n", "secret", "set", "binance-main")
	for _, name := range []string{"a", "b", "c"} {
		must("", "token", "create", "--name", name, "--venue", "bin", "--test", "--ttl", "1h")
	}
	var list []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(must("", "token", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, tk := range list {
		switch tk.Name {
		case "b":
			must("", "token", "freeze", tk.ID)
		case "c":
			must("", "token", "revoke", tk.ID)
		}
	}

	// One refused request: an audit record.
	if resp, err := http.Get("http://" + gatewayAddr(t, must("", "status", "--json")) + "/bin/api/v3/account"); err == nil {
		resp.Body.Close()
	} else {
		t.Fatal(err)
	}
	// Outcome records are committed asynchronously: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out = must("", "status", "--json")
		if !strings.Contains(out, `"records": 0,`) || time.Now().After(deadline) {
			break
		}
	}
	if strings.Contains(out, canary) || strings.Contains(out, "kst_") {
		t.Fatalf("status shows a secret: %s", out)
	}
	var st struct {
		Up            bool   `json:"up"`
		Version       string `json:"version"`
		PID           int    `json:"pid"`
		UptimeSeconds *int64 `json:"uptime_seconds"`
		DataDir       string `json:"data_dir"`
		Gateway       string `json:"gateway"`
		GatewaySocket string `json:"gateway_socket"`
		Build         struct {
			GoVersion string `json:"go_version"`
		} `json:"build"`
		Venues []struct {
			ID                string `json:"id"`
			Type              string `json:"type"`
			Mode              string `json:"mode"`
			Credential        string `json:"credential"`
			CredentialState   string `json:"credential_state"`
			CredentialPresent bool   `json:"credential_present"`
		} `json:"venues"`
		Store struct {
			Path          string `json:"path"`
			SizeBytes     int64  `json:"size_bytes"`
			SchemaVersion int    `json:"schema_version"`
			Error         string `json:"error"`
		} `json:"store"`
		Audit struct {
			Sink     string `json:"sink"`
			Records  uint64 `json:"records"`
			LastHash string `json:"last_hash"`
			Healthy  bool   `json:"healthy"`
			Error    string `json:"error"`
		} `json:"audit"`
		Tokens struct {
			Total, Active, Frozen, Revoked int
		} `json:"tokens"`
		Alerts struct {
			Detector     string `json:"detector"`
			Note         string `json:"note"`
			Detectors    int    `json:"detectors"`
			OpenFindings *int   `json:"open_findings"`
			Sinks        *int   `json:"sinks"`
		} `json:"alerts"`
		KillSwitch *struct {
			Engaged bool `json:"engaged"`
		} `json:"killswitch"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !st.Up || st.PID != os.Getpid() || st.Version == "" || st.UptimeSeconds == nil || st.DataDir != dir || st.Build.GoVersion == "" {
		t.Errorf("server part: %+v", st)
	}
	if _, _, err := net.SplitHostPort(st.Gateway); err != nil || st.GatewaySocket != filepath.Join(base, "gw.sock") {
		t.Errorf("gateway %q socket %q", st.Gateway, st.GatewaySocket)
	}
	if len(st.Venues) != 2 || st.Venues[0].ID != "bin" || st.Venues[0].Mode != "sandbox" || !st.Venues[0].CredentialPresent || st.Venues[0].CredentialState != "active" ||
		st.Venues[1].ID != "dm" || st.Venues[1].Mode != "live" || st.Venues[1].CredentialPresent || st.Venues[1].CredentialState != "missing" {
		t.Errorf("venues: %+v", st.Venues)
	}
	if st.Store.Path != filepath.Join(dir, "keystile.db") || st.Store.SizeBytes <= 0 || st.Store.SchemaVersion < 1 || st.Store.Error != "" {
		t.Errorf("store: %+v", st.Store)
	}
	if st.Audit.Sink != "sqlite" || !st.Audit.Healthy || st.Audit.Error != "" || st.Audit.Records < 1 || len(st.Audit.LastHash) != 16 {
		t.Errorf("audit: %+v", st.Audit)
	}
	if st.Tokens.Total != 3 || st.Tokens.Active != 1 || st.Tokens.Frozen != 1 || st.Tokens.Revoked != 1 {
		t.Errorf("tokens: %+v", st.Tokens)
	}
	if st.Alerts.Detector != "detect" || !strings.Contains(st.Alerts.Note, "14 detectors on") || st.Alerts.Detectors != 14 ||
		st.Alerts.OpenFindings == nil || *st.Alerts.OpenFindings != 0 || st.Alerts.Sinks == nil || *st.Alerts.Sinks != 0 {
		t.Errorf("alerts: %+v", st.Alerts)
	}
	if st.KillSwitch == nil || st.KillSwitch.Engaged {
		t.Errorf("kill switch: %+v", st.KillSwitch)
	}
	for _, k := range []string{`"uptime_seconds"`, `"started_at"`, `"credential_present"`, `"schema_version"`, `"last_checkpoint_seq"`, `"size_bytes"`} {
		if !strings.Contains(out, k) {
			t.Errorf("status --json lacks %s", k)
		}
	}

	out = must("", "status")
	for _, want := range []string{"server:", "up, pid", "gateway:", "http://127.0.0.1:", "unix:" + filepath.Join(base, "gw.sock"),
		"store:", "schema version", "audit:", "sqlite", "records", "tokens:", "3: 1 active, 1 frozen, 1 revoked",
		"kill switch:", "off", "detection:", "on, 14 detectors; 0 holds in force", "findings:", "none in the last 24 h",
		"alert sinks:", "none configured: findings go to the server log only", "bin", "sandbox", "binance-main", "active", "dm", "live", "dmarket-main", "missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, canary) {
		t.Fatal("status shows a secret")
	}

	// The kill switch engaged: status says by whom, why and how to lift it.
	must("", "panic", "--reason", "status check")
	out = must("", "status")
	if want := fmt.Sprintf("ENGAGED, 1 trips: all by admin uid=%d (killswitch.panic)", os.Getuid()); !strings.Contains(out, want) ||
		!strings.Contains(out, "keystile panic clear") {
		t.Errorf("status after panic lacks %q:\n%s", want, out)
	}
}

func gatewayAddr(t *testing.T, statusJSON string) string {
	t.Helper()
	var st struct {
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(statusJSON), &st); err != nil || st.Gateway == "" {
		t.Fatalf("no gateway in %s: %v", statusJSON, err)
	}
	return st.Gateway
}

func runCtx(ctx context.Context, env map[string]string, stdin string, args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := Run(ctx, args, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("socket %s never accepted", path)
}

// TestStatusStoreLines: the store line names the backend's state; with
// PostgreSQL and Redis, whether each answers and the fallbacks in use.
func TestStatusStoreLines(t *testing.T) {
	tests := []struct {
		name string
		st   admin.StoreStatus
		want []string
	}{
		{"sqlite", admin.StoreStatus{Backend: "sqlite", Path: "/d/keystile.db", SizeBytes: 4096, SchemaVersion: 12},
			[]string{"store:", "/d/keystile.db", "schema version 12"}},
		{"postgres up, redis up", admin.StoreStatus{Backend: "postgres", Path: "db:5432/keystile", Reachable: true, SchemaVersion: 3, ReplicaID: "gw-a",
			Redis: &admin.RedisStatus{Addr: "r:6379", State: "ok", FanOut: "redis", RateLimitFallback: "fail_closed"}},
			[]string{"store:", "postgres db:5432/keystile (reachable, schema version 3, replica gw-a)", "redis:", "r:6379 ok (fan-out: redis; rate limits if down: fail_closed)"}},
		{"postgres down, redis down", admin.StoreStatus{Backend: "postgres", Path: "db:5432/keystile", Error: "postgres: db:5432/keystile: refused",
			Redis: &admin.RedisStatus{Addr: "r:6379", State: "down", FanOut: "polling", RateLimitFallback: "local_share", Error: "redis: down since 2026-12-07T18:00:00Z"}},
			[]string{"UNREACHABLE", "refused", "r:6379 DOWN (fan-out: polling; rate limits if down: local_share)", "down since"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := printStatus(&b, admin.Status{Store: &tt.st}); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status output lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
