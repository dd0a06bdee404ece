package app_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/sandbox"
)

// scrape fetches the metrics listener's text output.
func scrape(t *testing.T, h *harness) string {
	t.Helper()
	resp, err := h.hc.Get("http://" + h.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// sample returns the value of the series whose line starts with prefix
// (name and labels, as Prometheus prints them), or -1.
func sample(text, prefix string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestMetrics scrapes a real server's /metrics around bot traffic: the
// keystile_ series move with it, labels stay bounded when a client makes
// up venue names, and no secret, token or client order id appears.
func TestMetrics(t *testing.T) {
	creds := canaryCredentials()
	venues := append(e2eVenues(), exchangeVenues()[:2]...) // + binance, kraken
	h := startHarness(t, harnessOptions{Credentials: creds, Venues: venues, ExtraYAML: `metrics:
  listen: 127.0.0.1:0
policies:
  small:
    venues: [binance]
    operations: ["account.read", "order.*"]
    max_notional: "10 USDT"
  medium:
    venues: [binance]
    operations: ["account.read", "order.*"]
    max_notional: "100 USDT"
`})
	if h.srv.MetricsAddr() == "" {
		t.Fatal("no metrics listener")
	}
	before := scrape(t, h)
	for _, name := range []string{"keystile_build_info", "keystile_audit_queue_depth", "keystile_tokens", "keystile_up_since_seconds", "go_goroutines"} {
		if !strings.Contains(before, name) {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	bot := h.botToken(t)
	for _, v := range venues {
		wantOK(t, v.id, v.read, h.mustCall(t, bot.Token, v.id, v.read))
	}
	const cid = "cid-SECRET-client-order-7781"
	order := exchangeVenues()[0].order
	order.path = strings.Replace(order.path, "newClientOrderId=e2e-1", "newClientOrderId="+cid, 1)
	wantOK(t, "binance", order, h.mustCall(t, bot.Token, "binance", order))
	small := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}, Policy: "small", Scopes: []string{"account.read", "order.*"}})
	if r := h.mustCall(t, small.Token, "binance", exchangeVenues()[0].order); r.status != http.StatusForbidden {
		t.Fatalf("over-limit order: %d", r.status)
	}
	medium := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}, Policy: "medium", Scopes: []string{"account.read", "order.*"}})
	o2 := exchangeVenues()[0].order
	o2.path = strings.Replace(o2.path, "newClientOrderId=e2e-1", "newClientOrderId=e2e-2", 1)
	wantOK(t, "binance", o2, h.mustCall(t, medium.Token, "binance", o2))
	// One 503 on a read: retried once, then answered.
	inject(t, h, "binance", sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusServiceUnavailable, Count: 1, PathPrefix: "/api/v3/account"})
	wantOK(t, "binance", venues[len(venues)-2].read, h.mustCall(t, bot.Token, "binance", venues[len(venues)-2].read))
	// Made-up venues and paths must not become label values.
	for i := range 30 {
		_, _ = h.call(bot.Token, fmt.Sprintf("madeup%03d", i), botRequest{"GET", "/x/../y?z=1", ""})
		_, _ = h.call("kst_test_bogus"+strconv.Itoa(i), "binance", botRequest{"GET", "/api/v3/account", ""})
	}

	// The venue's usage windows are calendar windows (Binance's weight
	// resets each minute): read once more and scrape in the same minute.
	var after string
	for range 3 {
		minute := time.Now().Unix() / 60
		bin := exchangeVenues()[0]
		wantOK(t, bin.id, bin.read, h.mustCall(t, bot.Token, bin.id, bin.read))
		after = scrape(t, h)
		if time.Now().Unix()/60 == minute {
			break
		}
	}
	checks := []struct {
		series string
		min    float64
	}{
		{`keystile_requests_total{decision="allow",operation="account.read",rule="",venue="binance"}`, 1},
		{`keystile_requests_total{decision="allow",operation="order.place",rule="",venue="binance"}`, 1},
		{`keystile_requests_total{decision="deny",operation="order.place",rule="policy.small.max_notional",venue="binance"}`, 1},
		{`keystile_orders_total{decision="allow",venue="binance"}`, 1},
		{`keystile_order_notional_total{currency="USDT",decision="allow",venue="binance"}`, 30},
		{`keystile_upstream_responses_total{class="2xx",venue="kraken"}`, 1},
		{`keystile_upstream_seconds_count{venue="binance"}`, 2},
		{`keystile_gateway_added_seconds_count{decision="allow",venue="binance"}`, 2},
		{`keystile_upstream_retries_total{venue="binance"}`, 1},
		{`keystile_audit_commit_seconds_count`, 1},
		{`keystile_audit_records_total`, 1},
		{`keystile_store_writes_total`, 1},
		{`keystile_tokens{state="active"}`, 3},
		{`keystile_venue_rate_limit{venue="binance",window="weight_1m"}`, 6000},
		{`keystile_venue_rate_used{venue="binance",window="weight_1m"}`, 1},
	}
	for _, c := range checks {
		if got := sample(after, c.series); got < c.min {
			t.Errorf("%s = %v, want >= %v", c.series, got, c.min)
		}
	}
	if got, was := sample(after, `keystile_requests_total{decision="allow",operation="account.read",rule="",venue="binance"}`),
		sample(before, `keystile_requests_total{decision="allow",operation="account.read",rule="",venue="binance"}`); got <= was {
		t.Errorf("binance reads did not move: %v -> %v", was, got)
	}
	if strings.Contains(after, "madeup") {
		t.Error("a made-up venue name became a label value")
	}
	if sample(after, `keystile_requests_total{decision="deny",operation="",rule="token.invalid",venue="other"}`) < 0 &&
		!regexp.MustCompile(`keystile_requests_total\{[^}]*venue="other"`).MatchString(after) {
		t.Error("requests to unknown venues are not counted under venue=\"other\"")
	}
	series := 0
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "keystile_requests_total{") {
			series++
		}
	}
	if series > 20 {
		t.Errorf("%d keystile_requests_total series after 60 junk requests: labels are not bounded", series)
	}
	// The example dashboard queries only series the server exports.
	dash, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana", "keystile-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`keystile_[a-z0-9_]+`).FindAllString(string(dash), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.Contains(after, "# TYPE "+base+" ") {
			t.Errorf("the dashboard queries %s, which /metrics does not export", name)
		}
	}
	leaks := findNeedles(after, canaryNeedles(creds))
	for _, s := range []string{bot.Token, small.Token, string(bot.Info.ID), string(small.Info.ID), cid, "127.0.0.1:"} {
		if strings.Contains(after, s) {
			leaks = append(leaks, "token, token id, client order id or source address")
		}
	}
	if len(leaks) > 0 {
		t.Errorf("/metrics holds %v", leaks)
	}
}
