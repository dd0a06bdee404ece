package sandbox

import (
	"strconv"
	"testing"
	"time"
)

func bybitHeaders(c map[string]string, payload string, ts time.Time, window string) map[string]string {
	t := strconv.FormatInt(ts.UnixMilli(), 10)
	h := map[string]string{
		"X-BAPI-API-KEY": c["api_key"], "X-BAPI-TIMESTAMP": t,
		"X-BAPI-SIGN":  BybitSignature([]byte(c["secret"]), t, c["api_key"], window, []byte(payload)),
		"Content-Type": "application/json",
	}
	if window != "" {
		h["X-BAPI-RECV-WINDOW"] = window
	}
	return h
}

func TestBybitEmulator(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueBybit}, Clock: clk.Now})
	vi := s.Info().Venues[VenueBybit]
	c := vi.Credentials
	const order = `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"1","orderLinkId":"L1"}`
	tests := []struct {
		name, method, target, body string
		hdr                        func() map[string]string
		status                     int
		code                       float64
	}{
		{"tickers public", "GET", "/v5/market/tickers?category=spot&symbol=BTCUSDT", "", func() map[string]string { return nil }, 200, 0},
		{"balance", "GET", "/v5/account/wallet-balance?accountType=UNIFIED", "", func() map[string]string {
			return bybitHeaders(c, "accountType=UNIFIED", clk.Now(), "5000")
		}, 200, 0},
		{"default window", "GET", "/v5/account/wallet-balance?accountType=UNIFIED", "", func() map[string]string {
			return bybitHeaders(c, "accountType=UNIFIED", clk.Now().Add(-4*time.Second), "")
		}, 200, 0},
		{"place", "POST", "/v5/order/create", order, func() map[string]string { return bybitHeaders(c, order, clk.Now(), "5000") }, 200, 0},
		{"bad sign", "POST", "/v5/order/create", order, func() map[string]string { return bybitHeaders(c, order+" ", clk.Now(), "5000") }, 401, 10004},
		{"outside window", "GET", "/v5/order/realtime?category=spot", "", func() map[string]string {
			return bybitHeaders(c, "category=spot", clk.Now().Add(-6*time.Second), "5000")
		}, 401, 10002},
		{"from the future", "GET", "/v5/order/realtime?category=spot", "", func() map[string]string {
			return bybitHeaders(c, "category=spot", clk.Now().Add(time.Second), "5000")
		}, 401, 10002},
		{"wrong key", "GET", "/v5/order/realtime?category=spot", "", func() map[string]string {
			h := bybitHeaders(c, "category=spot", clk.Now(), "5000")
			h["X-BAPI-API-KEY"] = "kst_live_x"
			return h
		}, 401, 10003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, nil, tt.method, vi.BaseURL+tt.target, []byte(tt.body), tt.hdr())
			if m := r.json(t); r.status != tt.status || m["retCode"] != tt.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	if o := s.Orders(VenueBybit); len(o) != 1 || o[0].ClientOrderID != "L1" {
		t.Fatalf("orders %+v", o)
	}
	// cancel-all, then the per-second order limit with its headers.
	body := `{"category":"spot"}`
	var r resp
	for i := 0; i <= BybitOrderLimit; i++ {
		r = do(t, nil, "POST", vi.BaseURL+"/v5/order/cancel-all", []byte(body), bybitHeaders(c, body, clk.Now(), "5000"))
		if i == 0 && (r.json(t)["retCode"] != float64(0) || s.Stats(VenueBybit).Cancels != 1) {
			t.Fatalf("cancel-all: %s", r.body)
		}
	}
	if m := r.json(t); m["retCode"] != float64(10006) || r.header.Get("X-Bapi-Limit-Status") != "0" ||
		r.header.Get("X-Bapi-Limit") != strconv.Itoa(BybitOrderLimit) || r.header.Get("X-Bapi-Limit-Reset-Timestamp") == "" {
		t.Fatalf("rate limit: %v %s", r.header, r.body)
	}
}
