package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
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

// TestE2EDetectAndFreeze: through the sandbox, a bot trades normally for
// a warm-up, then places an order ten times its usual size from a new
// address. The detector reports both (order_size, new_source) through the
// notifier (the server log until alert sinks exist) and as detect records
// with evidence in the audit log, and its freeze action refuses the bot's
// next request with 403 token.frozen. Nothing secret appears in any of
// it.
func TestE2EDetectAndFreeze(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: detectYAML})
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

	// The alerts (logged by the notifier adapter) name both detectors.
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

	// No secret anywhere: not the token, not the venue credential.
	secrets := []string{tok}
	for _, v := range h.info.Venues[sandbox.VenueBinance].Credentials {
		secrets = append(secrets, v)
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
			if strings.Contains(line, "detect:") && strings.Contains(line, s) {
				t.Fatalf("a detect log line holds a secret: %s", line)
			}
		}
	}
}
