package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/sandbox"
)

// sdkRoutePolicy: "fwd" caps order size (order rules); "reads" has no
// order rule at all, so only the gateway's own batch rule stands between a
// batch and the venue.
const sdkRoutePolicy = fwdPolicy + `  reads:
    operations: ["market.read", "account.read", "order.*"]
`

// sdkRoute is a route an SDK calls by default, with what its answer must
// hold (a JSON path of member names and indexes, and the value's text
// when want is set).
type sdkRoute struct {
	venue string
	req   botRequest
	op    string
	path  []any
	want  string
}

// sdkRoutes are the routes ccxt's loadMarkets/fetchBalance/createOrder
// call besides the ones the other end-to-end tests cover.
func sdkRoutes() []sdkRoute {
	return []sdkRoute{
		{sandbox.VenueBinance, botRequest{"GET", "/sapi/v1/capital/config/getall", ""}, "account.read", []any{0, "networkList", 0, "network"}, "BTC"},
		{sandbox.VenueBinance, botRequest{"GET", "/sapi/v1/margin/allPairs", ""}, "market.read", []any{0, "symbol"}, "BTCUSDT"},
		{sandbox.VenueBinance, botRequest{"GET", "/sapi/v1/margin/isolated/allPairs", ""}, "account.read", []any{0, "quote"}, "USDT"},
		{sandbox.VenueBinance, botRequest{"GET", "/fapi/v1/exchangeInfo", ""}, "market.read", []any{"symbols", 0, "contractType"}, "PERPETUAL"},
		{sandbox.VenueBinance, botRequest{"GET", "/dapi/v1/exchangeInfo", ""}, "market.read", []any{"symbols", 0, "marginAsset"}, "BTC"},
		{sandbox.VenueBinance, botRequest{"GET", "/api/v3/exchangeInfo", ""}, "market.read", []any{"symbols", 0, "filters", 1, "filterType"}, "LOT_SIZE"},
		{sandbox.VenueBinance, botRequest{"GET", "/api/v3/ticker/24hr?symbol=BTCUSDT", ""}, "market.read", []any{"lastPrice"}, "37500.00000000"},
		{sandbox.VenueKraken, botRequest{"GET", "/0/public/Assets", ""}, "market.read", []any{"result", "XXBT", "altname"}, "XBT"},
		{sandbox.VenueKraken, botRequest{"GET", "/0/public/AssetPairs", ""}, "market.read", []any{"result", "XXBTZUSD", "altname"}, "XBTUSD"},
		{sandbox.VenueKraken, botRequest{"POST", "/0/private/BalanceEx", "x=1"}, "account.read", []any{"result", "XXBT", "balance"}, "2.5000000000"},
		{sandbox.VenueOKX, botRequest{"GET", "/api/v5/public/instruments?instType=SPOT", ""}, "market.read", []any{"data", 0, "instId"}, "BTC-USDT"},
		{sandbox.VenueOKX, botRequest{"GET", "/api/v5/asset/currencies", ""}, "account.read", []any{"data", 0, "ccy"}, "BTC"},
		{sandbox.VenueBybit, botRequest{"GET", "/v5/market/instruments-info?category=spot", ""}, "market.read", []any{"result", "list", 0, "lotSizeFilter", "basePrecision"}, "0.000001"},
		{sandbox.VenueBybit, botRequest{"GET", "/v5/asset/coin/query-info", ""}, "account.read", []any{"result", "rows", 0, "chains", 0, "chain"}, "BTC"},
		{sandbox.VenueBybit, botRequest{"GET", "/v5/account/info", ""}, "account.read", []any{"result", "unifiedMarginStatus"}, "5"},
		{sandbox.VenueBybit, botRequest{"GET", "/v5/user/query-api", ""}, "account.read", []any{"result", "uta"}, "1"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/v2/currencies", ""}, "market.read", []any{"data", 0, "id"}, "USD"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/v2/currencies/crypto", ""}, "market.read", []any{"data", 0, "code"}, "BTC"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/v2/exchange-rates", ""}, "market.read", []any{"data", "currency"}, "USD"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/v2/accounts", ""}, "account.read", []any{"data", 0, "balance", "currency"}, "USD"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/api/v3/brokerage/accounts", ""}, "account.read", []any{"accounts", 1, "hold", "currency"}, "BTC"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/api/v3/brokerage/accounts", ""}, "account.read", []any{"accounts", 1, "type"}, "ACCOUNT_TYPE_CRYPTO"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/api/v3/brokerage/market/products", ""}, "market.read", []any{"products", 0, "base_increment"}, "0.00000001"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/api/v3/brokerage/market/products/BTC-USD/ticker", ""}, "market.read", []any{"trades", 0, "product_id"}, "BTC-USD"},
		{sandbox.VenueCoinbase, botRequest{"GET", "/api/v3/brokerage/transaction_summary", ""}, "account.read", []any{"fee_tier", "maker_fee_rate"}, "0.006"},
	}
}

// jsonAt walks a JSON document along path and returns the value there as
// text ("" when absent).
func jsonAt(body []byte, path []any) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return ""
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return ""
			}
			v = a[k]
		}
	}
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// TestE2ESDKDefaultRoutes: each route an SDK calls by default is mapped
// as the read it is, reaches the emulator signed like any other (public
// market data unsigned) and comes back in the venue's documented shape.
func TestE2ESDKDefaultRoutes(t *testing.T) {
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: sdkRoutePolicy, Received: rec.add})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "reads"}).Token
	for _, r := range sdkRoutes() {
		t.Run(r.venue+" "+r.req.method+" "+r.req.path, func(t *testing.T) {
			mark := rec.len()
			resp := h.mustCall(t, tok, r.venue, r.req)
			wantOK(t, r.venue, r.req, resp)
			if got := jsonAt(resp.body, r.path); got != r.want {
				t.Errorf("answer at %v = %q, want %q: %.400s", r.path, got, r.want, resp.body)
			}
			got := rec.since(r.venue, mark)
			if len(got) != 1 || got[0].Method != r.req.method {
				t.Fatalf("the venue received %d requests", len(got))
			}
			if signed := signatureCount(r.venue, got[0]) > 0 || sentKey(r.venue, got[0]) != ""; signed == (r.op == "market.read" && publicRoute(r)) {
				t.Errorf("signed=%v for a %s route", signed, r.op)
			}
		})
	}
	// The operation each was recorded as, in the audit log.
	log := h.log.String()
	for _, r := range sdkRoutes() {
		path, _, _ := strings.Cut(r.req.path, "?")
		if !strings.Contains(log, `"path":"`+path+`","operation":"`+r.op+`"`) {
			t.Errorf("%s %s was not recorded as %s", r.venue, path, r.op)
		}
	}
}

// publicRoute reports the market reads venues serve without a key.
func publicRoute(r sdkRoute) bool {
	return !(r.venue == sandbox.VenueBinance && strings.HasPrefix(r.req.path, "/sapi/"))
}

// TestE2ESDKRoutesAdversarial: no new read route lets a write through. A
// read route under another method is unmapped; method-override headers
// never reach the venue (it receives the GET the token was checked for);
// a query flag does not change what the venue does; futures writes on the
// Binance futures hosts are unmapped; batch placements of several orders
// are refused whatever the policy, one-order batches are policy-checked
// and idempotent like single orders.
func TestE2ESDKRoutesAdversarial(t *testing.T) {
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: sdkRoutePolicy, Received: rec.add})
	reads := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "reads"}).Token
	capped := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd"}).Token
	readOnly := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "reads", Scopes: []string{"market.read", "account.read"}}).Token

	t.Run("other methods on read routes are unmapped", func(t *testing.T) {
		for _, r := range sdkRoutes() {
			if r.req.method != http.MethodGet {
				continue
			}
			for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
				if m == "POST" && strings.HasPrefix(r.req.path, "/0/public/") {
					continue // Kraken serves public market data to POST too
				}
				mark := rec.len()
				resp := h.mustCall(t, reads, r.venue, botRequest{m, r.req.path, `{"x":1}`})
				if resp.status != http.StatusForbidden || resp.errorRule() != "venue.unmapped_route" {
					t.Errorf("%s %s %s: %d %s", r.venue, m, r.req.path, resp.status, resp.body)
				}
				if n := len(rec.since(r.venue, mark)); n != 0 {
					t.Errorf("%s %s %s reached the venue", r.venue, m, r.req.path)
				}
			}
		}
	})

	t.Run("method override headers and query flags", func(t *testing.T) {
		for _, r := range sdkRoutes() {
			if r.req.method != http.MethodGet {
				continue
			}
			sep := "?"
			if strings.Contains(r.req.path, "?") {
				sep = "&"
			}
			mark := rec.len()
			req := botRequest{"GET", r.req.path + sep + "_method=POST&method=DELETE", ""}
			hdr := http.Header{"X-Http-Method-Override": {"POST"}, "X-Http-Method": {"DELETE"}, "X-Method-Override": {"PUT"}}
			resp, err := h.callHeader(reads, r.venue, req, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status == http.StatusForbidden && resp.errorRule() == "venue.unmapped_route" {
				t.Errorf("%s %s: refused as unmapped", r.venue, req.path)
			}
			for _, x := range rec.since(r.venue, mark) {
				if x.Method != http.MethodGet {
					t.Errorf("%s %s: the venue received %s", r.venue, req.path, x.Method)
				}
				for k := range hdr {
					if x.Header.Get(k) != "" {
						t.Errorf("%s %s: %s reached the venue", r.venue, req.path, k)
					}
				}
			}
		}
	})

	t.Run("account reads need account.read, order batches order.place", func(t *testing.T) {
		market := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "reads", Scopes: []string{"market.read"}}).Token
		for _, r := range sdkRoutes() {
			resp := h.mustCall(t, market, r.venue, r.req)
			if allowed := resp.status == http.StatusOK; allowed != (r.op == "market.read") {
				t.Errorf("%s %s (%s) with a market.read token: %d %s", r.venue, r.req.path, r.op, resp.status, resp.body)
			}
		}
		resp := h.mustCall(t, readOnly, sandbox.VenueOKX, botRequest{"POST", "/api/v5/trade/batch-orders", okxBatch("0.1")})
		if resp.status != http.StatusForbidden || resp.errorRule() != "token.scope" {
			t.Errorf("batch-orders with a read-only token: %d %s", resp.status, resp.body)
		}
	})

	t.Run("futures writes are unmapped", func(t *testing.T) {
		for _, r := range []botRequest{
			{"POST", "/fapi/v1/order?symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1", ""},
			{"POST", "/dapi/v1/order?symbol=BTCUSD_PERP&side=BUY&type=LIMIT&quantity=1&price=1", ""},
			{"POST", "/fapi/v1/leverage?symbol=BTCUSDT&leverage=125", ""},
			{"POST", "/sapi/v1/margin/loan?asset=BTC&amount=1", ""},
			{"GET", "/fapi/v2/account", ""},
		} {
			resp := h.mustCall(t, reads, sandbox.VenueBinance, r)
			if resp.status != http.StatusForbidden || resp.errorRule() != "venue.unmapped_route" {
				t.Errorf("%s %s: %d %s", r.method, r.path, resp.status, resp.body)
			}
		}
	})

	t.Run("batches of several orders are refused whatever the policy", func(t *testing.T) {
		for _, c := range []struct {
			venue string
			req   botRequest
		}{
			{sandbox.VenueOKX, botRequest{"POST", "/api/v5/trade/batch-orders", okxBatch("0.1", "0.1")}},
			{sandbox.VenueOKX, botRequest{"POST", "/api/v5/trade/batch-orders/", okxBatch("0.1", "0.2", "0.3")}},
			{sandbox.VenueKraken, botRequest{"POST", "/0/private/AddOrderBatch",
				"pair=XBTUSD&orders[0][type]=buy&orders[0][ordertype]=limit&orders[0][price]=1&orders[0][volume]=9&orders[1][type]=buy&orders[1][ordertype]=limit&orders[1][price]=1&orders[1][volume]=9"}},
		} {
			for _, tok := range []string{reads, capped} {
				mark, orders := rec.len(), len(h.sb.Orders(c.venue))
				resp := h.mustCall(t, tok, c.venue, c.req)
				if resp.status != http.StatusForbidden || resp.errorRule() != "venue.batch_orders" {
					t.Errorf("%s %s: %d %s", c.venue, c.req.path, resp.status, resp.body)
				}
				if n := len(rec.since(c.venue, mark)); n != 0 || len(h.sb.Orders(c.venue)) != orders {
					t.Errorf("%s %s: a refused batch reached the venue", c.venue, c.req.path)
				}
			}
		}
	})

	t.Run("malformed batch bodies are refused", func(t *testing.T) {
		for _, body := range []string{
			`[]`, `[{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"0.1"},]`,
			`[[{"instId":"BTC-USDT","side":"buy","ordType":"limit","px":"1","sz":"0.1"}]]`,
			`{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"0.1"}`,
			`[{"instId":"BTC-USDT","side":"buy","ordType":"limit","px":"1","sz":"0.1"}] [1]`,
		} {
			mark := rec.len()
			resp := h.mustCall(t, capped, sandbox.VenueOKX, botRequest{"POST", "/api/v5/trade/batch-orders", body})
			if resp.status != http.StatusForbidden {
				t.Errorf("%s: %d %s", body, resp.status, resp.body)
			}
			if n := len(rec.since(sandbox.VenueOKX, mark)); n != 0 {
				t.Errorf("%s reached the venue", body)
			}
		}
	})

	t.Run("one-order batches are orders", func(t *testing.T) {
		big := h.mustCall(t, capped, sandbox.VenueOKX, botRequest{"POST", "/api/v5/trade/batch-orders", okxBatch("5")})
		if big.status != http.StatusForbidden || big.errorRule() != "policy.fwd.max_quantity" {
			t.Errorf("an oversized order in a batch: %d %s", big.status, big.body)
		}
		hdr := http.Header{gateway.HeaderIdempotencyKey: {"batch-1"}}
		req := botRequest{"POST", "/api/v5/trade/batch-orders", okxBatch("0.1")}
		mark := rec.len()
		a, err := h.callHeader(capped, sandbox.VenueOKX, req, hdr)
		if err != nil || a.status != http.StatusOK {
			t.Fatalf("one-order batch: %v %d %s", err, a.status, a.body)
		}
		coid := a.header.Get(gateway.HeaderClientOrderID)
		got := rec.since(sandbox.VenueOKX, mark)
		if coid == "" || len(got) != 1 || !strings.HasPrefix(string(got[0].Body), `[{`) || !strings.Contains(string(got[0].Body), `"clOrdId":"`+coid+`"`) {
			t.Fatalf("client order id %q not set inside the batch's order: %d requests, %s", coid, len(got), bodyOf(got))
		}
		b, err := h.callHeader(capped, sandbox.VenueOKX, req, hdr)
		if err != nil || b.status != http.StatusOK || b.header.Get(gateway.HeaderReplay) != "true" || string(a.body) != string(b.body) {
			t.Fatalf("repeat: %v %d %s", err, b.status, b.body)
		}
		n := 0
		for _, o := range h.sb.Orders(sandbox.VenueOKX) {
			if o.ClientOrderID == coid {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d orders with client order id %s at the venue, want 1", n, coid)
		}
	})
}

// okxBatch is a batch-orders body with one BTC-USDT limit buy per size.
func okxBatch(sizes ...string) string {
	var parts []string
	for _, sz := range sizes {
		parts = append(parts, `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"`+sz+`"}`)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func bodyOf(rs []sandbox.Received) string {
	var b strings.Builder
	for _, r := range rs {
		b.Write(r.Body)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestE2EProxyHostsSandboxOnly: a sandbox venue's proxy_hosts take the
// CONNECTs of the real hosts (with the futures hosts of Binance) for its
// kst_test_ tokens only; other hosts stay refused.
func TestE2EProxyHostsSandboxOnly(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: fwdPolicy,
		Configure: func(_ sandbox.Info, cfg *config.Config) {
			vc := cfg.Venues[sandbox.VenueBinance]
			vc.ProxyHosts = []string{"api.binance.com", "fapi.binance.com"}
			cfg.Venues[sandbox.VenueBinance] = vc
		}})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd"}).Token
	c := h.proxyClient(t, tok)
	for _, u := range []string{"https://api.binance.com/api/v3/exchangeInfo", "https://fapi.binance.com/fapi/v1/exchangeInfo"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", u, resp.StatusCode)
		}
	}
	// A host the venue does not alias: refused at CONNECT.
	if _, err := c.Get("https://api.kraken.com/0/public/Time"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("CONNECT api.kraken.com: %v", err)
	}
	// A live token of the same venue: refused (only the test endpoint is
	// behind proxy_hosts, and a sandbox venue has no live endpoint).
	live, err := h.admin.CreateToken(context.Background(), admin.CreateTokenRequest{Name: "live", Venues: []string{sandbox.VenueBinance},
		Scopes: botScopes, TTL: 15 * 60e9})
	if err != nil {
		t.Fatalf("live token: %v", err)
	}
	lc := h.proxyClient(t, live.Token)
	resp, err := lc.Get("https://api.binance.com/api/v3/exchangeInfo")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a kst_live_ token went through a proxy_hosts alias: %d", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("a kst_live_ token at a proxy_hosts alias: %v, want 403", err)
	}
}
