package sandbox

import (
	"net/http"
	"testing"
	"time"
)

func okxHeaders(c map[string]string, method, uri, body string, ts time.Time) map[string]string {
	t := ts.UTC().Format("2006-01-02T15:04:05.000Z")
	return map[string]string{
		"OK-ACCESS-KEY": c["api_key"], "OK-ACCESS-PASSPHRASE": c["passphrase"], "OK-ACCESS-TIMESTAMP": t,
		"OK-ACCESS-SIGN": OKXSignature([]byte(c["secret"]), t, method, uri, []byte(body)), "Content-Type": "application/json",
	}
}

func TestOKXEmulator(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueOKX}, Clock: clk.Now})
	vi := s.Info().Venues[VenueOKX]
	c := vi.Credentials
	const order = `{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"c1","side":"buy","ordType":"limit","px":"1","sz":"2"}`
	tests := []struct {
		name, method, uri, body string
		hdr                     func() map[string]string
		status                  int
		code                    string
	}{
		{"ticker public", "GET", "/api/v5/market/ticker?instId=BTC-USDT", "", func() map[string]string { return nil }, 200, "0"},
		{"balance", "GET", "/api/v5/account/balance?ccy=BTC", "", func() map[string]string {
			return okxHeaders(c, "GET", "/api/v5/account/balance?ccy=BTC", "", clk.Now())
		}, 200, "0"},
		{"place", "POST", "/api/v5/trade/order", order, func() map[string]string {
			return okxHeaders(c, "POST", "/api/v5/trade/order", order, clk.Now())
		}, 200, "0"},
		{"query not signed", "GET", "/api/v5/account/balance?ccy=ETH", "", func() map[string]string {
			return okxHeaders(c, "GET", "/api/v5/account/balance", "", clk.Now())
		}, 401, "50113"},
		{"expired", "GET", "/api/v5/account/balance", "", func() map[string]string {
			return okxHeaders(c, "GET", "/api/v5/account/balance", "", clk.Now().Add(-31*time.Second))
		}, 401, "50102"},
		{"wrong key", "GET", "/api/v5/account/balance", "", func() map[string]string {
			h := okxHeaders(c, "GET", "/api/v5/account/balance", "", clk.Now())
			h["OK-ACCESS-KEY"] = "kst_live_x"
			return h
		}, 401, "50111"},
		{"wrong passphrase", "GET", "/api/v5/account/balance", "", func() map[string]string {
			h := okxHeaders(c, "GET", "/api/v5/account/balance", "", clk.Now())
			h["OK-ACCESS-PASSPHRASE"] = "nope"
			return h
		}, 401, "50105"},
		{"missing", "GET", "/api/v5/account/balance", "", func() map[string]string { return nil }, 401, "50103"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, nil, tt.method, vi.BaseURL+tt.uri, []byte(tt.body), tt.hdr())
			if m := r.json(t); r.status != tt.status || m["code"] != tt.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	if o := s.Orders(VenueOKX); len(o) != 1 || o[0].ClientOrderID != "c1" || o[0].Size != "2" {
		t.Fatalf("orders %+v", o)
	}
	if st := s.Stats(VenueOKX); st.AuthFailures != 5 {
		t.Fatalf("auth failures %d", st.AuthFailures)
	}
	// Cancel by client order id, then the rate limit: 60 order requests per 2 s.
	cancel := `{"instId":"BTC-USDT","clOrdId":"c1"}`
	r := do(t, nil, "POST", vi.BaseURL+"/api/v5/trade/cancel-order", []byte(cancel), okxHeaders(c, "POST", "/api/v5/trade/cancel-order", cancel, clk.Now()))
	if m := r.json(t); m["code"] != "0" || s.Stats(VenueOKX).Cancels != 1 {
		t.Fatalf("cancel: %s", r.body)
	}
	clk.Advance(3 * time.Second)
	last := 0
	for i := 0; i <= OKXOrderLimit; i++ {
		r = do(t, nil, "POST", vi.BaseURL+"/api/v5/trade/cancel-order", []byte(cancel), okxHeaders(c, "POST", "/api/v5/trade/cancel-order", cancel, clk.Now()))
		last = r.status
	}
	if m := r.json(t); last != http.StatusTooManyRequests || m["code"] != "50011" {
		t.Fatalf("rate limit: %d %s", last, r.body)
	}
}
