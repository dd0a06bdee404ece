package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/alerttest"
	"github.com/keystile/keystile/internal/alert/webhook"
)

// TestAlertCommands runs a real server with three sinks — a signed
// webhook whose key is in the vault, e-mail over STARTTLS whose password
// comes from the environment, and an ntfy topic nobody listens on — and
// drives `keystile alert test` and `alert status` against it, then
// removes a sink from the file and sees the server reload it.
func TestAlertCommands(t *testing.T) {
	const hookKey = "CANARY-webhook-key-3b9d51aa07"
	const smtpPassword = "CANARY-smtp-pass-77c1e0"
	var mu sync.Mutex
	var hooks []webhook.Payload
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(hookKey), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		hooks = append(hooks, p)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	smtpSrv, err := alerttest.StartSMTP(alerttest.SMTPOptions{User: "keystile", Password: smtpPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer smtpSrv.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String() + "/alerts"
	_ = dead.Close()

	base, err := os.MkdirTemp("", "ks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "d")
	env := map[string]string{"KEYSTILE_DATA_DIR": dir, "HOME": t.TempDir(), "KS_SMTP_PASSWORD": smtpPassword}
	if code, _, stderr := run(t, env, "", "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	caFile := filepath.Join(base, "smtp-ca.pem")
	if err := os.WriteFile(caFile, smtpSrv.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	sinks := `  - name: ops-hook
    type: webhook
    settings:
      url: ` + hook.URL + `/keystile
      secret_ref: vault:alerts#webhook_key
  - name: oncall-mail
    type: email
    min_severity: high
    settings:
      host: 127.0.0.1
      port: ` + strings.TrimPrefix(smtpSrv.Addr(), "127.0.0.1:") + `
      username: keystile
      password_ref: env:KS_SMTP_PASSWORD
      from: keystile <alerts@example.org>
      to: [oncall@example.org]
      ca_file: ` + caFile + `
`
	pager := `  - name: pager
    type: ntfy
    timeout: 2s
    settings:
      url: ` + deadURL + `
`
	cfgPath := filepath.Join(dir, "keystile.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath+".tmp", []byte("gateway:\n  listen: 127.0.0.1:0\nalerts:\n  dedupe_window: 1m\n  sinks:\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write(sinks + pager)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var serveLog string
	go func() {
		_, _, serveLog = runCtx(ctx, env, "", "serve")
		close(done)
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
	// The webhook key goes into the vault after the server started: it is
	// read at first use.
	if code, _, stderr := run(t, env, "webhook_key="+hookKey+"\n", "secret", "set", "alerts"); code != 0 {
		t.Fatalf("secret set: %s", stderr)
	}

	var outputs []string
	code, out, stderr := run(t, env, "", "alert", "test")
	outputs = append(outputs, out, stderr)
	if code != ExitFailure || !strings.Contains(stderr, "at least one sink failed") {
		t.Fatalf("alert test: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"ops-hook", "oncall-mail", "pager"} {
		if !strings.Contains(out, want) {
			t.Fatalf("alert test output lacks %s:\n%s", want, out)
		}
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 {
			lines[f[0]] = l
		}
	}
	if !strings.Contains(lines["ops-hook"], " ok ") || !strings.Contains(lines["oncall-mail"], " ok ") || !strings.Contains(lines["pager"], "FAILED") {
		t.Fatalf("per-sink results:\n%s", out)
	}
	mu.Lock()
	if len(hooks) != 1 || hooks[0].Alert.Kind != alert.KindTest || hooks[0].Alert.Detector != alert.DetectorTest {
		t.Fatalf("webhook got %+v", hooks)
	}
	mu.Unlock()
	if m := smtpSrv.Mails(); len(m) != 1 || !m[0].TLS || m[0].User != "keystile" || m[0].To[0] != "oncall@example.org" {
		t.Fatalf("mail %+v", m)
	}

	code, out, stderr = run(t, env, "", "alert", "test", "--sink", "ops-hook", "--json")
	outputs = append(outputs, out, stderr)
	var res []alert.TestResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || !res[0].OK {
		t.Fatalf("alert test --sink ops-hook: %d %s %s", code, out, stderr)
	}
	code, _, stderr = run(t, env, "", "alert", "test", "--sink", "nope")
	if code != ExitFailure || !strings.Contains(stderr, `no alert sink named "nope"`) {
		t.Fatalf("unknown sink: %d %s", code, stderr)
	}

	code, out, stderr = run(t, env, "", "alert", "status", "--json")
	outputs = append(outputs, out, stderr)
	var st alert.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Sinks) != 3 {
		t.Fatalf("alert status: %d %s %s", code, out, stderr)
	}
	code, out, _ = run(t, env, "", "alert", "list")
	outputs = append(outputs, out)
	if code != 0 || !strings.Contains(out, "oncall-mail") || !strings.Contains(out, "SINK") {
		t.Fatalf("alert list: %s", out)
	}
	code, out, _ = run(t, env, "", "status")
	outputs = append(outputs, out)
	if code != 0 || !strings.Contains(out, "alert sinks:") || !strings.Contains(out, "3") {
		t.Fatalf("status: %s", out)
	}

	// Reload: the pager sink goes away.
	write(sinks)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, out, _ = run(t, env, "", "alert", "status", "--json")
		if json.Unmarshal([]byte(out), &st) == nil && len(st.Sinks) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sinks not reloaded: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(serveLog, "alert sinks reloaded") || !strings.Contains(serveLog, "test delivery failed") {
		t.Fatalf("server log lacks the reload or the failed delivery:\n%s", serveLog)
	}
	for _, o := range append(outputs, serveLog) {
		if strings.Contains(o, hookKey) || strings.Contains(o, smtpPassword) {
			t.Fatalf("a sink secret was printed:\n%s", o)
		}
	}
}
