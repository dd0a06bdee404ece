package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/metrics"
)

func known(id string) bool { return id == "binance" || id == "kraken" }

func text(t testing.TB, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestRecordLabels(t *testing.T) {
	m := metrics.New(metrics.Options{KnownVenue: known})
	ctx := context.Background()
	events := []audit.Event{
		{Venue: "binance", Operation: "order.place", Decision: audit.Allow, Status: 200, Upstream: 200,
			Latency: 3 * time.Millisecond, UpstreamLatency: 2 * time.Millisecond, Notional: "60 USDT", ClientOrderID: "cid-canary-1"},
		{Venue: "kraken", Operation: "account.read", Decision: audit.Error, Status: 502, UpstreamLatency: time.Millisecond},
		{Venue: "nosuch-venue", Operation: "order.place", Decision: audit.Deny, Rule: "route.unknown_venue", Status: 404},
		{Venue: "binance", Decision: audit.Deny, Rule: "rule\nwith newline {\"}", Status: 400},
		{Venue: "binance", Operation: "order.place", Decision: audit.Allow, Notional: "1e400 USDT"},
		{Venue: "binance", Operation: "order.place", Decision: audit.Allow, Notional: "5 usdt"},
	}
	for _, e := range events {
		m.Record(ctx, e)
	}
	m.OnRetry("binance")
	m.OnRetry("made-up")
	out := text(t, m)
	for _, want := range []string{
		`keystile_requests_total{decision="allow",operation="order.place",rule="",venue="binance"} 3`,
		`keystile_requests_total{decision="deny",operation="",rule="route.unknown_venue",venue="other"} 1`,
		`keystile_requests_total{decision="deny",operation="",rule="other",venue="binance"} 1`,
		`keystile_upstream_responses_total{class="2xx",venue="binance"} 1`,
		`keystile_upstream_responses_total{class="error",venue="kraken"} 1`,
		`keystile_order_notional_total{currency="USDT",decision="allow",venue="binance"} 60`,
		`keystile_upstream_retries_total{venue="binance"} 1`,
		`keystile_upstream_retries_total{venue="other"} 1`,
		`keystile_gateway_added_seconds_sum{decision="allow",venue="binance"} 0.001`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	for _, bad := range []string{"nosuch-venue", "made-up", "cid-canary-1", "newline"} {
		if strings.Contains(out, bad) {
			t.Errorf("%q became part of the metrics", bad)
		}
	}
}

func TestObserveAuditCommitNil(t *testing.T) {
	var m *metrics.Metrics
	m.ObserveAuditCommit(time.Millisecond, 3) // must not panic
}

// FuzzRecord: any event is counted without panicking, and every label
// value is from the bounded set (no input bytes in the output).
func FuzzRecord(f *testing.F) {
	f.Add("binance", "order.place", "allow", "", "60 USDT", 200, int64(1000), int64(10))
	f.Add("x\x00y", "op\n", "deny", "policy.a.max_notional", "NaN USDT", 0, int64(-5), int64(99))
	f.Add("kraken", "*", "error", "token.brute_force", "-1 USD", 999, int64(0), int64(0))
	f.Fuzz(func(t *testing.T, venueID, op, decision, rule, notional string, upstream int, lat, upLat int64) {
		m := metrics.New(metrics.Options{KnownVenue: known})
		m.Record(context.Background(), audit.Event{Venue: venueID, Operation: op, Decision: decision, Rule: rule,
			Notional: notional, Upstream: upstream, Latency: time.Duration(lat), UpstreamLatency: time.Duration(upLat)})
		out := text(t, m)
		if !known(venueID) && venueID != "" && len(venueID) > 3 && strings.Contains(out, `venue="`+venueID+`"`) {
			t.Fatalf("unknown venue %q became a label", venueID)
		}
		if strings.Contains(out, "\x00") {
			t.Fatal("a NUL byte reached the output")
		}
	})
}
