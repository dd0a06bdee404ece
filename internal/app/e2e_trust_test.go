package app_test

import (
	"net/http"
	"testing"
)

// TestE2EDuplicateOrderParams: on every exchange, through the sandbox, an
// order naming a parameter twice (a quantity twice, a symbol in two
// places, a duplicate JSON key, nested or in another letter case) is
// refused with 400 venue.duplicate_parameter without any policy, and
// nothing reaches the venue.
func TestE2EDuplicateOrderParams(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: exchangeVenues()})
	tok := h.botToken(t).Token
	for _, tc := range []struct {
		venue, name string
		r           botRequest
	}{
		{"binance", "quantity twice", botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&quantity=10", ""}},
		{"binance", "query and body", botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000", "quantity=10"}},
		{"kraken", "volume twice", botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=0.01&volume=10"}},
		{"kraken", "pair in query and body", botRequest{"POST", "/0/private/AddOrder?pair=ETHUSD", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=0.01"}},
		{"okx", "sz twice", botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"2","sz":"2000"}`}},
		{"bybit", "symbol in another case", botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","SYMBOL":"ETHUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"1"}`}},
		{"coinbase", "nested base_size twice", botRequest{"POST", "/api/v3/brokerage/orders", `{"client_order_id":"e2e-dup","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","base_size":"10","limit_price":"100"}}}`}},
	} {
		t.Run(tc.venue+" "+tc.name, func(t *testing.T) {
			before := h.sb.Stats(tc.venue)
			resp, err := formCall(h, tok, tc.venue, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusBadRequest || resp.errorRule() != "venue.duplicate_parameter" {
				t.Fatalf("status %d rule %q, want 400 venue.duplicate_parameter: %s", resp.status, resp.errorRule(), resp.body)
			}
			after := h.sb.Stats(tc.venue)
			if after.Requests != before.Requests || after.Orders != before.Orders {
				t.Fatalf("the venue saw %d requests, %d orders", after.Requests-before.Requests, after.Orders-before.Orders)
			}
		})
	}
}
