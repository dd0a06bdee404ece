package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/sandbox"
)

// budgetPolicy: a 1000 USDT calendar-day budget per token on Binance,
// orders up to 100 USDT each.
const budgetPolicy = `policies:
  scalper:
    venues: [binance]
    operations: ["market.read", "account.read", "order.*"]
    instruments:
      allow: ["BTCUSDT"]
    max_notional: "100 USDT"
    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000 USDT"
`

func binanceOnly() []e2eVenue {
	for _, v := range exchangeVenues() {
		if v.id == sandbox.VenueBinance {
			return []e2eVenue{v}
		}
	}
	panic("no binance venue")
}

// order60 is a 60 USDT limit order (0.002 BTC at 30000).
var order60 = botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.002&price=30000", ""}

func (h *harness) scalper(t *testing.T) string {
	t.Helper()
	return h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "scalper", Venues: []string{sandbox.VenueBinance},
		Scopes: []string{"market.read", "account.read", "order.*"}}).Token
}

// burst sends n orders at once and counts answers by status and rule.
func burst(t *testing.T, h *harness, tok string, n int, r botRequest, hdr func(i int) http.Header) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	errs := concurrently(n, func(i int) error {
		resp, err := h.callHeader(tok, sandbox.VenueBinance, r, hdr(i))
		if err != nil {
			return err
		}
		key := fmt.Sprint(resp.status)
		if rule := resp.errorRule(); rule != "" {
			key += " " + rule
		}
		mu.Lock()
		got[key]++
		mu.Unlock()
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func noHeader(int) http.Header { return nil }

// TestE2EBudgetHoldsUnderConcurrency: 100 concurrent 60 USDT orders against
// a 1000 USDT daily budget: exactly 16 reach the venue; the same when the
// server restarts half way.
func TestE2EBudgetHoldsUnderConcurrency(t *testing.T) {
	t.Run("one run", func(t *testing.T) {
		h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: budgetPolicy})
		tok := h.scalper(t)
		got := burst(t, h, tok, 100, order60, noHeader)
		if got["200"] != 16 || got["403 policy.scalper.budget.daily"] != 84 || len(got) != 2 {
			t.Fatalf("answers %v, want 16×200 and 84×403 policy.scalper.budget.daily", got)
		}
		if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 16 {
			t.Fatalf("sandbox received %d orders, want 16", n)
		}
	})
	t.Run("restart half way", func(t *testing.T) {
		h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: budgetPolicy})
		tok := h.scalper(t)
		first := burst(t, h, tok, 50, order60, noHeader)
		h.restart(t)
		second := burst(t, h, tok, 50, order60, noHeader)
		if ok := first["200"] + second["200"]; ok != 16 {
			t.Fatalf("accepted %d (%v then %v), want 16", ok, first, second)
		}
		if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 16 {
			t.Fatalf("sandbox received %d orders, want 16", n)
		}
	})
}

// TestE2EPolicyDenials: each refusal is a 403 naming the rule, sent
// before anything is signed (the sandbox sees nothing).
func TestE2EPolicyDenials(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: budgetPolicy})
	tok := h.scalper(t)
	for _, tc := range []struct {
		name string
		r    botRequest
		rule string
	}{
		{"instrument", botRequest{"POST", "/api/v3/order?symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=2000", ""}, "policy.scalper.instrument"},
		{"max notional", botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=30000", ""}, "policy.scalper.max_notional"},
		{"withdrawal", botRequest{"POST", "/sapi/v1/capital/withdraw/apply?coin=BTC&address=x&amount=1", ""}, "policy.scalper.operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tok
			if tc.name == "withdrawal" {
				// Even a token scoped for withdrawals is held to its
				// policy, which does not name wallet.withdraw.
				tok = h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "scalper", Venues: []string{sandbox.VenueBinance},
					Scopes: []string{"order.*", "wallet.withdraw"}}).Token
			}
			resp := h.mustCall(t, tok, sandbox.VenueBinance, tc.r)
			if resp.status != http.StatusForbidden || resp.errorRule() != tc.rule {
				t.Fatalf("status %d rule %q, want 403 %s (%s)", resp.status, resp.errorRule(), tc.rule, resp.body)
			}
		})
	}
	if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 0 {
		t.Fatalf("sandbox received %d orders", n)
	}
}

// TestE2EIdempotentOrders: a repeated Idempotency-Key, sequential or 20 at
// once, reaches the venue once; the repeats get the first answer marked
// as a replay; a reused key with another order is refused.
func TestE2EIdempotentOrders(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly()})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance}}).Token
	key := func(k string) func(int) http.Header {
		return func(int) http.Header { return http.Header{gateway.HeaderIdempotencyKey: {k}} }
	}
	a, err := h.callHeader(tok, sandbox.VenueBinance, order60, key("k-1")(0))
	if err != nil || a.status != 200 || a.header.Get(gateway.HeaderReplay) != "" {
		t.Fatalf("first: %v %d %q", err, a.status, a.body)
	}
	coid := a.header.Get(gateway.HeaderClientOrderID)
	if coid == "" {
		t.Fatal("no client order id header")
	}
	b, err := h.callHeader(tok, sandbox.VenueBinance, order60, key("k-1")(0))
	if err != nil || b.status != 200 || b.header.Get(gateway.HeaderReplay) != "true" || !bytes.Equal(a.body, b.body) {
		t.Fatalf("repeat: %v %d replay=%q body %q vs %q", err, b.status, b.header.Get(gateway.HeaderReplay), b.body, a.body)
	}
	orders := h.sb.Orders(sandbox.VenueBinance)
	if len(orders) != 1 || orders[0].ClientOrderID != coid {
		t.Fatalf("sandbox orders %+v, want one with client order id %s", orders, coid)
	}

	got := burst(t, h, tok, 20, order60, key("k-2"))
	if got["200"] != 20 {
		t.Fatalf("20 concurrent: %v", got)
	}
	if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 2 {
		t.Fatalf("after 20 concurrent repeats the sandbox has %d orders, want 2", n)
	}

	other := botRequest{"POST", strings.Replace(order60.path, "quantity=0.002", "quantity=0.003", 1), ""}
	c, err := h.callHeader(tok, sandbox.VenueBinance, other, key("k-1")(0))
	if err != nil || c.status != http.StatusUnprocessableEntity || c.errorRule() != "idem.key_reused" {
		t.Fatalf("reused key: %v %d %s", err, c.status, c.body)
	}
	if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 2 {
		t.Fatalf("sandbox has %d orders, want 2", n)
	}
}

// TestE2EDeniedOrderClaimsNoKey: the idempotency key is claimed while the
// policy is evaluated; a denial must give it back, so the bot can reuse the
// key for a corrected order, and a repeat of that order is a replay.
func TestE2EDeniedOrderClaimsNoKey(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: budgetPolicy})
	tok := h.scalper(t)
	hdr := http.Header{gateway.HeaderIdempotencyKey: {"k-denied"}}
	big := botRequest{"POST", strings.Replace(order60.path, "quantity=0.002", "quantity=0.01", 1), ""}
	for i := 0; i < 2; i++ {
		d, err := h.callHeader(tok, sandbox.VenueBinance, big, hdr)
		if err != nil || d.status != http.StatusForbidden || d.errorRule() != "policy.scalper.max_notional" {
			t.Fatalf("too big, attempt %d: %v %d %s", i, err, d.status, d.body)
		}
	}
	a, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr)
	if err != nil || a.status != 200 || a.header.Get(gateway.HeaderReplay) != "" {
		t.Fatalf("corrected order with the same key: %v %d %s", err, a.status, a.body)
	}
	b, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr)
	if err != nil || b.status != 200 || b.header.Get(gateway.HeaderReplay) != "true" {
		t.Fatalf("repeat: %v %d replay=%q", err, b.status, b.header.Get(gateway.HeaderReplay))
	}
	if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 1 {
		t.Fatalf("sandbox has %d orders, want 1", n)
	}
}

// TestE2EUnknownOutcomeNeverResent: the connection drops after the venue
// took the order. keystile looks the order up by client order id instead
// of sending it again; when the lookup fails too, the bot gets 504 with
// the client order id, and its retry with the same key is answered from
// the lookup. The venue receives the order once.
func TestE2EUnknownOutcomeNeverResent(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly()})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance}}).Token
	hdr := func(k string) http.Header { return http.Header{gateway.HeaderIdempotencyKey: {k}} }

	// Recovered at once by the lookup.
	if err := h.sb.InjectFault(sandbox.VenueBinance, sandbox.Fault{Kind: sandbox.FaultResetAfterRead, PathPrefix: "/api/v3/order"}); err != nil {
		t.Fatal(err)
	}
	a, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr("u-1"))
	if err != nil || a.status != 200 || a.header.Get(gateway.HeaderOutcome) != "recovered" {
		t.Fatalf("reset after read: %v %d outcome=%q %s", err, a.status, a.header.Get(gateway.HeaderOutcome), a.body)
	}
	if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 1 {
		t.Fatalf("sandbox has %d orders, want 1", n)
	}
	b, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr("u-1"))
	if err != nil || b.status != 200 || b.header.Get(gateway.HeaderReplay) != "true" {
		t.Fatalf("retry: %v %d %s", err, b.status, b.body)
	}

	// The lookup fails as well (every one of its 3 attempts): 504 with
	// the client order id; the retry looks it up again instead of sending.
	if err := h.sb.InjectFault(sandbox.VenueBinance, sandbox.Fault{Kind: sandbox.FaultResetAfterRead, PathPrefix: "/api/v3/order", Count: 4}); err != nil {
		t.Fatal(err)
	}
	c, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr("u-2"))
	if err != nil || c.status != http.StatusGatewayTimeout || c.header.Get(gateway.HeaderClientOrderID) == "" {
		t.Fatalf("unknown: %v %d coid=%q %s", err, c.status, c.header.Get(gateway.HeaderClientOrderID), c.body)
	}
	d, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr("u-2"))
	if err != nil || d.status != 200 || d.header.Get(gateway.HeaderOutcome) != "recovered" ||
		d.header.Get(gateway.HeaderClientOrderID) != c.header.Get(gateway.HeaderClientOrderID) {
		t.Fatalf("retry after unknown: %v %d %v %s", err, d.status, d.header, d.body)
	}
	if n := len(h.sb.Orders(sandbox.VenueBinance)); n != 2 {
		t.Fatalf("sandbox has %d orders, want 2", n)
	}
}

// TestE2EAuditUnwritable: when the audit store cannot be written, writes
// are refused with 503 before anything is signed, while reads, health and
// the admin API keep working.
func TestE2EAuditUnwritable(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: "audit:\n  sink: jsonl\n  path: /dev/full\n"})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance}}).Token
	resp := h.mustCall(t, tok, sandbox.VenueBinance, order60)
	if resp.status != http.StatusServiceUnavailable || resp.errorCode() != "audit_unavailable" || resp.errorRule() != "audit.unavailable" {
		t.Fatalf("order with an unwritable audit log: %d %s", resp.status, resp.body)
	}
	if n := h.sb.Stats(sandbox.VenueBinance).Orders; n != 0 {
		t.Fatalf("the venue received %d orders", n)
	}
	read := exchangeVenues()[0].read
	if r := h.mustCall(t, tok, sandbox.VenueBinance, read); r.status != http.StatusOK {
		t.Fatalf("read with an unwritable audit log: %d %s", r.status, r.body)
	}
	hr, err := h.hc.Get(h.gw + "/-/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", hr.StatusCode)
	}
	if _, err := h.admin.ListSecrets(context.Background()); err != nil {
		t.Fatalf("admin API: %v", err)
	}
}

// TestE2EAuditUnwritablePostRead: a read that is a POST (Kraken's private
// Balance) is a read: it needs no durable intent and works while the audit
// log cannot be written; Kraken's AddOrder, a POST too, is refused.
func TestE2EAuditUnwritablePostRead(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	var kraken e2eVenue
	for _, v := range exchangeVenues() {
		if v.id == sandbox.VenueKraken {
			kraken = v
		}
	}
	h := startHarness(t, harnessOptions{Venues: []e2eVenue{kraken}, ExtraYAML: "audit:\n  sink: jsonl\n  path: /dev/full\n"})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueKraken}}).Token
	if r := h.mustCall(t, tok, sandbox.VenueKraken, kraken.read); r.status != http.StatusOK {
		t.Fatalf("POST read with an unwritable audit log: %d %s", r.status, r.body)
	}
	resp := h.mustCall(t, tok, sandbox.VenueKraken, kraken.order)
	if resp.status != http.StatusServiceUnavailable || resp.errorCode() != "audit_unavailable" {
		t.Fatalf("order with an unwritable audit log: %d %s", resp.status, resp.body)
	}
	if n := h.sb.Stats(sandbox.VenueKraken).Orders; n != 0 {
		t.Fatalf("the venue received %d orders", n)
	}
}

// TestE2ESlowVenueNeverDoubleOrders: the venue takes longer than keystile
// waits, and places the order afterwards. keystile answers 504 with the
// client order id; a retry with the same key while the venue has not
// processed it yet is not sent again (its lookup finds nothing, which this
// soon proves nothing); once the venue has it, the retry is answered from
// the lookup. The venue receives the order once.
func TestE2ESlowVenueNeverDoubleOrders(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), Configure: func(_ sandbox.Info, cfg *config.Config) {
		v := cfg.Venues[sandbox.VenueBinance]
		v.Timeouts.ResponseHeader, v.Timeouts.Total = 300*time.Millisecond, 600*time.Millisecond
		cfg.Venues[sandbox.VenueBinance] = v
	}})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance}}).Token
	hdr := http.Header{gateway.HeaderIdempotencyKey: {"slow-1"}}
	if err := h.sb.InjectFault(sandbox.VenueBinance, sandbox.Fault{Kind: sandbox.FaultSlowProcess, PathPrefix: "/api/v3/order", Delay: sandbox.Duration(1500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	a, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr)
	if err != nil || a.status != http.StatusGatewayTimeout || a.errorCode() != "outcome_unknown" || a.header.Get(gateway.HeaderClientOrderID) == "" {
		t.Fatalf("slow venue: %v %d %v %s", err, a.status, a.header, a.body)
	}
	b, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr)
	if err != nil || b.status != http.StatusGatewayTimeout || b.header.Get(gateway.HeaderClientOrderID) != a.header.Get(gateway.HeaderClientOrderID) {
		t.Fatalf("retry while the venue is still busy: %v %d %s", err, b.status, b.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(h.sb.Orders(sandbox.VenueBinance)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the venue never placed the slow order")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := h.callHeader(tok, sandbox.VenueBinance, order60, hdr)
	if err != nil || c.status != http.StatusOK || c.header.Get(gateway.HeaderOutcome) != "recovered" {
		t.Fatalf("retry once the venue has it: %v %d %v %s", err, c.status, c.header, c.body)
	}
	time.Sleep(200 * time.Millisecond)
	if orders := h.sb.Orders(sandbox.VenueBinance); len(orders) != 1 || orders[0].ClientOrderID != a.header.Get(gateway.HeaderClientOrderID) {
		t.Fatalf("venue orders %+v, want exactly the first", orders)
	}
}
