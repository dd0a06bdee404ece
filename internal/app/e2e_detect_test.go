package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/alerttest"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/sandbox"
)

// detectYAML: the detectors the test drives with warm-ups a test can
// reach in seconds (counts only), order_size freezing the token.
const detectYAML = `detect:
  cooldown: 1m
  detectors:
    order_size: {factor: 5, warmup_events: 20, warmup_time: 0s, actions: [alert, freeze]}
    new_source: {warmup_events: 20, warmup_time: 0s}
`

// binanceOrder is a limit order of qty BTC at 30000 with a unique client
// order id.
func binanceOrder(i int, qty string) botRequest {
	return botRequest{"POST", fmt.Sprintf("/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=%s&price=30000&newClientOrderId=det-%d", qty, i), ""}
}

// clientFrom is an HTTP client whose connections come from local address
// src (any 127.0.0.0/8 address is loopback on Linux).
func clientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// waitFindings polls the detector's counters through the admin API until
// at least n findings were reported (bounded).
func waitFindings(t *testing.T, h *harness, n uint64) admin.DetectStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := h.admin.DetectStatus(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Stats.Findings >= n && st.Stats.Processed == st.Stats.Received {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("detector: %+v, want %d findings", st.Stats, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alertSinks are a signed-webhook receiver and a real SMTP server (with
// STARTTLS and SMTP AUTH) on loopback, configured as keystile's alert
// sinks; they record what they get.
type alertSinks struct {
	hookKey  string
	hook     *httptest.Server
	smtp     *alerttest.SMTPServer
	mu       sync.Mutex
	alerts   []alert.Alert
	bodies   [][]byte
	unsigned int // requests whose signature did not verify (answered 401)
}

// startAlertSinks starts both receivers and returns the alerts: section
// that points keystile at them (the e-mail sink gets high and critical
// alerts only). Secrets are file: references in dir.
func startAlertSinks(t *testing.T, dir string) (*alertSinks, string) {
	t.Helper()
	a := &alertSinks{hookKey: "CANARY-e2e-webhook-hmac-key-7c2a"}
	a.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		defer a.mu.Unlock()
		if webhook.Verify([]byte(a.hookKey), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute) != nil {
			a.unsigned++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		if json.Unmarshal(body, &p) != nil || p.Alert.ID != r.Header.Get(webhook.HeaderIdempotency) {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		a.alerts = append(a.alerts, p.Alert)
		a.bodies = append(a.bodies, body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.hook.Close)
	const smtpPassword = "CANARY-e2e-smtp-password-31f0"
	var err error
	a.smtp, err = alerttest.StartSMTP(alerttest.SMTPOptions{User: "keystile", Password: smtpPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.smtp.Close() })
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yaml := fmt.Sprintf(`alerts:
  sinks:
    - name: hook
      type: webhook
      min_severity: info
      timeout: 5s
      settings: {url: "%s/keystile", secret_ref: "file:%s"}
    - name: mail
      type: email
      min_severity: high
      timeout: 5s
      settings:
        host: 127.0.0.1
        port: %d
        tls: starttls
        username: keystile
        password_ref: "file:%s"
        from: "keystile <alerts@example.test>"
        to: [oncall@example.test]
        ca_file: "%s"
`, a.hook.URL, write("hook.key", a.hookKey), a.smtp.Port, write("smtp.pw", smtpPassword), write("smtp-ca.pem", string(a.smtp.CAPEM)))
	return a, yaml
}

// wait polls until have reports true (bounded).
func (a *alertSinks) wait(t *testing.T, what string, have func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		a.mu.Lock()
		ok := have()
		a.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert sinks: %s did not arrive", what)
		}
	}
}

func (a *alertSinks) byDetector(d string) *alert.Alert {
	for i := range a.alerts {
		if a.alerts[i].Detector == d {
			return &a.alerts[i]
		}
	}
	return nil
}

func evidence(a *alert.Alert, key string) string {
	for _, f := range a.Evidence {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// TestE2EDetectAndFreeze: through the sandbox, a bot trades normally for
// a warm-up, then places an order ten times its usual size from a new
// address. The detector reports both (order_size, new_source): as alerts
// at a loopback webhook (HMAC signature verified with webhook.Verify) and
// — the critical one — by e-mail through a real SMTP server (STARTTLS,
// AUTH), as detect records with evidence in the audit log, and in
// keystile status; its freeze action refuses the bot's next request with
// 403 token.frozen. No secret (the bot's token, the venue credential, the
// sinks' keys) appears in any alert, record or log line.
func TestE2EDetectAndFreeze(t *testing.T) {
	sinks, alertsYAML := startAlertSinks(t, t.TempDir())
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: detectYAML + alertsYAML})
	bot := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance},
		Scopes: []string{"market.read", "account.read", "order.*"}, CIDRs: []string{"127.0.0.0/8"}})
	tok := bot.Token

	for i := range 25 {
		resp := h.mustCall(t, tok, sandbox.VenueBinance, binanceOrder(i, "0.002"))
		wantOK(t, sandbox.VenueBinance, binanceOrder(i, "0.002"), resp)
	}
	if st := waitFindings(t, h, 0); st.Stats.Processed < 25 || st.Stats.Findings != 0 {
		t.Fatalf("findings during normal trading: %+v", st.Stats)
	}

	// Ten times the usual size, from 127.0.0.2.
	big := binanceOrder(100, "0.02")
	req, err := http.NewRequest(big.method, h.gw+"/"+sandbox.VenueBinance+big.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := clientFrom(t, "127.0.0.2").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the 10× order: %d (the detector acts after the fact; the policy allows it)", resp.StatusCode)
	}
	st := waitFindings(t, h, 2)
	if st.Stats.Actions < 2 || st.Stats.Failed != 0 {
		t.Fatalf("actions: %+v", st.Stats)
	}

	// The bot's next request is refused: the token is frozen.
	next := h.mustCall(t, tok, sandbox.VenueBinance, binanceOrder(101, "0.002"))
	if next.status != http.StatusForbidden || next.errorRule() != "token.frozen" {
		t.Fatalf("next request after the freeze: %d %s", next.status, next.body)
	}
	if info, err := h.admin.ShowToken(context.Background(), bot.Info.ID); err != nil || info.State != "frozen" {
		t.Fatalf("token state %q, %v", info.State, err)
	}

	// The alerts reach the webhook (signed) and, the critical one, the
	// SMTP server.
	sinks.wait(t, "order_size and new_source at the webhook", func() bool {
		return sinks.byDetector("detect.order_size") != nil && sinks.byDetector("detect.new_source") != nil
	})
	mailOf := func(detector string) *alerttest.Mail {
		for _, m := range sinks.smtp.Mails() {
			if bytes.Contains(m.Data, []byte("detector: "+detector+"\r\n")) {
				return &m
			}
		}
		return nil
	}
	sinks.wait(t, "the order_size e-mail", func() bool { return mailOf("detect.order_size") != nil })
	sinks.mu.Lock()
	size, src := *sinks.byDetector("detect.order_size"), *sinks.byDetector("detect.new_source")
	unsigned := sinks.unsigned
	bodies := bytes.Join(sinks.bodies, []byte("\n"))
	sinks.mu.Unlock()
	if unsigned != 0 {
		t.Fatalf("%d webhook requests failed signature verification", unsigned)
	}
	if size.Severity != alert.SeverityCritical || size.Subject.Token != bot.Info.ID || size.Subject.Venue != sandbox.VenueBinance ||
		evidence(&size, "observed") != "0.02" || evidence(&size, "actions") != "alert, freeze" ||
		!strings.Contains(size.Action, "keystile token freeze "+bot.Info.ID) || !strings.HasPrefix(size.ID, "alr_") {
		t.Fatalf("order_size alert %+v", size)
	}
	if src.Severity != alert.SeverityMedium || evidence(&src, "source") != "127.0.0.2" || src.Subject.Token != bot.Info.ID {
		t.Fatalf("new_source alert %+v", src)
	}
	// The e-mail sink takes high and critical alerts only: order_size (and
	// concurrent_sources, since the two addresses were used within its
	// window), never new_source; every mail over STARTTLS, authenticated.
	if m := mailOf("detect.order_size"); !bytes.Contains(m.Data, []byte(bot.Info.ID)) || !bytes.Contains(m.Data, []byte("observed: 0.02")) {
		t.Fatalf("order_size mail:\n%s", m.Data)
	}
	if mailOf("detect.new_source") != nil {
		t.Fatal("a medium alert was mailed to a min_severity high sink")
	}
	for _, m := range sinks.smtp.Mails() {
		if !m.TLS || m.User != "keystile" {
			t.Fatalf("a mail sent without TLS or authentication: tls %v user %q", m.TLS, m.User)
		}
	}
	// keystile status reports the findings, the detector's state and the
	// sinks.
	status, err := h.admin.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a := status.Alerts; a == nil || a.Detector != "detect" || a.OpenFindings < 2 || a.OpenCritical < 1 || a.Sinks != 2 || len(a.Unhealthy) != 0 ||
		len(a.Findings) == 0 {
		t.Fatalf("status alerts: %+v", status.Alerts)
	}

	// The log still has each finding (detect: alert).
	logs := h.log.String()
	alerts := map[string]map[string]any{}
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "detect: alert" {
			continue
		}
		alerts[fmt.Sprint(m["detector"])] = m
	}
	if a := alerts["order_size"]; a == nil || a["token_id"] != bot.Info.ID || a["severity"] != "critical" || a["observed"].(float64) < 0.019 {
		t.Fatalf("order_size alert %v (all: %v)", a, alerts)
	}
	if a := alerts["new_source"]; a == nil || a["source"] != "127.0.0.2" {
		t.Fatalf("new_source alert %v", a)
	}

	// Stop the server (the detector drains into the audit log first),
	// then read and verify the audit log.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := app.OpenAuditReader(ctx, h.cfg, h.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var detects []audit.Record
	if err := r.Scan(ctx, 1, func(rec audit.Record) error {
		if rec.Kind == audit.KindDetect {
			detects = append(detects, rec)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var freeze *audit.Record
	for i, rec := range detects {
		if rec.Rule == "detect.order_size" && rec.Operation == "detect.freeze" {
			freeze = &detects[i]
		}
	}
	if freeze == nil {
		t.Fatalf("no detect.freeze record for order_size among %d detect records", len(detects))
	}
	var ev struct {
		Detector, Action, Result, Target string
		Evidence                         struct {
			Observed, Baseline, Threshold float64
			Requests                      []string
		}
	}
	if err := json.Unmarshal([]byte(freeze.Evidence), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Result != "done" || ev.Target != bot.Info.ID || ev.Evidence.Observed != 0.02 || ev.Evidence.Baseline < 0.0019 ||
		ev.Evidence.Baseline > 0.0025 || len(ev.Evidence.Requests) != 1 || freeze.Quantity != "0.02" || freeze.Decision != "critical" {
		t.Fatalf("freeze record %+v, evidence %+v", freeze, ev)
	}
	// The triggering request is in the log under the id the evidence names.
	var found bool
	_ = r.Scan(ctx, 1, func(rec audit.Record) error {
		found = found || rec.Kind == audit.KindOutcome && rec.RequestID == ev.Evidence.Requests[0] && rec.Quantity == "0.02"
		return nil
	})
	if !found {
		t.Fatalf("evidence names request %s, not in the audit log as the 10× order", ev.Evidence.Requests[0])
	}
	keys := auditKeys(t, h.dataDir, h.cfg)
	if _, err := audit.Verify(ctx, r, keys.PublicKey()); err != nil {
		t.Fatalf("audit verify: %v", err)
	}

	// No secret anywhere: not the token, not the venue credential, not
	// the sinks' keys — in the audit log, the log, the alerts or the mail
	// as it crossed the wire.
	secrets := []string{tok, sinks.hookKey, "CANARY-e2e-smtp-password-31f0"}
	for _, v := range h.info.Venues[sandbox.VenueBinance].Credentials {
		secrets = append(secrets, v)
	}
	var mailData []byte
	for _, m := range sinks.smtp.Mails() {
		mailData = append(mailData, m.Data...)
	}
	for _, sec := range secrets {
		if bytes.Contains(bodies, []byte(sec)) || bytes.Contains(mailData, []byte(sec)) {
			t.Fatalf("an alert carries a secret")
		}
	}
	for _, rec := range detects {
		for _, s := range secrets {
			if bytes.Contains(rec.Raw, []byte(s)) {
				t.Fatalf("a detect record holds a secret: %s", rec.Raw)
			}
		}
	}
	for _, s := range secrets {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, s) {
				t.Fatalf("a log line holds a secret: %s", line)
			}
		}
	}
}

// TestE2EStalledSinkNeverBlocks: the only alert sink never answers while
// the detector fires on every other request (a withdrawal attempt each,
// a 1 ns cooldown, every finding alerted). Every request is still answered
// promptly — the bot's reads by the venue, its withdrawals refused by
// scope — and the alerts the sink cannot take pile up in its bounded
// queue and are dropped (counted), never waited for.
func TestE2EStalledSinkNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	stalled := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stalled.Close()
	defer close(release)
	keyFile := filepath.Join(t.TempDir(), "hook.key")
	if err := os.WriteFile(keyFile, []byte("stalled-sink-hmac-key-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: fmt.Sprintf(`detect:
  cooldown: 1ns
  max_actions_per_minute: 100000
  detectors:
    sensitive_operations: {actions: [alert]}
alerts:
  dedupe_window: 0s
  rate_limit: none
  queue_size: 16
  retry: {max_attempts: 1}
  sinks:
    - name: stalled
      type: webhook
      timeout: 1m
      settings: {url: "%s/hook", secret_ref: "file:%s"}
`, stalled.URL, keyFile)})
	bot := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance},
		Scopes: []string{"market.read", "account.read"}, CIDRs: []string{"127.0.0.0/8"}})
	withdraw := botRequest{"POST", "/sapi/v1/capital/withdraw/apply?coin=BTC&address=bc1qexample&amount=1", ""}
	read := h.venues[0].read

	const n = 200
	var slowest time.Duration
	began := time.Now()
	for i := range n {
		r := read
		if i%2 == 1 {
			r = withdraw
		}
		start := time.Now()
		resp := h.mustCall(t, bot.Token, sandbox.VenueBinance, r)
		slowest = max(slowest, time.Since(start))
		switch {
		case i%2 == 0 && resp.status != http.StatusOK:
			t.Fatalf("read %d: %d %s", i, resp.status, resp.body)
		case i%2 == 1 && (resp.status != http.StatusForbidden || resp.errorRule() != "token.scope"):
			t.Fatalf("withdrawal %d: %d %s", i, resp.status, resp.body)
		}
	}
	elapsed := time.Since(began)
	st := waitFindings(t, h, n/4)
	as := h.srv.Alerts().Status(context.Background())
	t.Logf("%d requests in %s (slowest %s); %d findings, %d alert actions; sink: %+v; ingress dropped %d",
		n, elapsed, slowest, st.Stats.Findings, st.Stats.Actions, as.Sinks, as.Dropped)
	// Liveness bounds, generous for a loaded machine: a request that
	// waited for the sink would wait its 1m timeout.
	if slowest > 5*time.Second || elapsed > 60*time.Second {
		t.Fatalf("requests waited: slowest %s, all %s", slowest, elapsed)
	}
	if len(as.Sinks) != 1 {
		t.Fatalf("sinks: %+v", as.Sinks)
	}
	sink := as.Sinks[0]
	if hits.Load() == 0 || sink.Delivered != 0 || sink.Dropped+as.Dropped == 0 {
		t.Fatalf("the sink was not stalled while the detector fired: hits %d, status %+v, ingress dropped %d", hits.Load(), sink, as.Dropped)
	}
	if st.Stats.Failed != 0 || st.Stats.Dropped != 0 || st.Stats.Findings+st.Stats.Suppressed < n/2 || st.Stats.Actions != st.Stats.Findings {
		t.Fatalf("detector: %+v", st.Stats)
	}
}
