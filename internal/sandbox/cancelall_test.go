package sandbox

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The cancel-all endpoints answer as the venues document, and refuse
// unsigned requests without cancelling anything.

func TestBinanceCancelAllRules(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueBinance}, Clock: clk.Now})
	vi := s.Info().Venues[VenueBinance]
	sec := vi.Credentials["secret"]
	h := map[string]string{"X-MBX-APIKEY": vi.Credentials["api_key"]}
	signed := func(method, path, q string) resp {
		return do(t, nil, method, vi.BaseURL+path+"?"+binanceSigned(sec, q, "", clk.Now()), nil, h)
	}
	for _, sym := range []string{"BTCUSDT", "BTCUSDT", "ETHUSDT"} {
		if r := signed("POST", "/api/v3/order", "symbol="+sym+"&side=BUY&type=LIMIT&quantity=1&price=1"); r.status != 200 {
			t.Fatalf("order: %d %s", r.status, r.body)
		}
	}
	wantCode := func(name string, r resp, status int, code float64) {
		t.Helper()
		if r.status != status || r.json(t)["code"] != code {
			t.Errorf("%s: %d %s, want %d code %v", name, r.status, r.body, status, code)
		}
	}
	wantCode("no symbol", signed("DELETE", "/api/v3/openOrders", ""), 400, -1102)
	wantCode("unsigned", do(t, nil, "DELETE", vi.BaseURL+"/api/v3/openOrders?symbol=BTCUSDT&timestamp=1", nil, h), 400, -1022)
	if r := signed("GET", "/api/v3/openOrders", "symbol=ETHUSDT"); strings.Count(string(r.body), `"orderId"`) != 1 {
		t.Errorf("openOrders?symbol=ETHUSDT: %s", r.body)
	}
	r := signed("GET", "/api/v3/openOrders", "")
	if strings.Count(string(r.body), `"orderId"`) != 3 || r.header.Get("X-MBX-USED-WEIGHT-1M") == "" {
		t.Errorf("openOrders: %s", r.body)
	}
	r = signed("DELETE", "/api/v3/openOrders", "symbol=BTCUSDT")
	if r.status != 200 || strings.Count(string(r.body), `"CANCELED"`) != 2 || !strings.Contains(string(r.body), `"origClientOrderId"`) {
		t.Fatalf("cancel BTCUSDT: %d %s", r.status, r.body)
	}
	wantCode("nothing left", signed("DELETE", "/api/v3/openOrders", "symbol=BTCUSDT"), 400, -2011)
	if open := s.venues[VenueBinance].openOrders(); len(open) != 1 || open[0].Instrument != "ETHUSDT" {
		t.Fatalf("open after: %+v", open)
	}
}

func TestOKXCancelBatchRules(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueOKX}, Clock: clk.Now})
	vi := s.Info().Venues[VenueOKX]
	c := vi.Credentials
	placed, err := s.AddOrders(VenueOKX, "", []Order{{Instrument: "BTC-USDT"}, {Instrument: "BTC-USDT"}, {Instrument: "ETH-USDT"}})
	if err != nil {
		t.Fatal(err)
	}
	post := func(body string, hdr map[string]string) resp {
		return do(t, nil, "POST", vi.BaseURL+"/api/v5/trade/cancel-batch-orders", []byte(body), hdr)
	}
	signed := func(body string) resp {
		return post(body, okxHeaders(c, "POST", "/api/v5/trade/cancel-batch-orders", body, clk.Now()))
	}
	// Paging: newest first, limit 2, then after the last ordId.
	get := func(q string) resp {
		return do(t, nil, "GET", vi.BaseURL+"/api/v5/trade/orders-pending?"+q, nil, okxHeaders(c, "GET", "/api/v5/trade/orders-pending?"+q, "", clk.Now()))
	}
	if r := get("limit=2"); !strings.Contains(string(r.body), placed[2].ID) || strings.Contains(string(r.body), placed[0].ID) {
		t.Fatalf("page 1: %s", r.body)
	}
	if r := get("limit=2&after=" + placed[1].ID); !strings.Contains(string(r.body), placed[0].ID) || strings.Count(string(r.body), "ordId") != 1 {
		t.Fatalf("page 2: %s", r.body)
	}
	tests := []struct {
		name, body string
		code       string
		status     int
	}{
		{"unsigned", `[{"instId":"BTC-USDT","ordId":"` + placed[0].ID + `"}]`, "50103", 401},
		{"no instId", `[{"ordId":"` + placed[0].ID + `"}]`, "51000", 200},
		{"more than 20", "[" + strings.TrimSuffix(strings.Repeat(`{"instId":"A","ordId":"1"},`, 21), ",") + "]", "51000", 200},
		{"partial", `[{"instId":"BTC-USDT","ordId":"` + placed[0].ID + `"},{"instId":"BTC-USDT","ordId":"999"}]`, "2", 200},
		{"none", `[{"instId":"BTC-USDT","ordId":"999"}]`, "1", 200},
		{"all", `[{"instId":"BTC-USDT","ordId":"` + placed[1].ID + `"},{"instId":"ETH-USDT","ordId":"` + placed[2].ID + `"}]`, "0", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r resp
			if tt.name == "unsigned" {
				r = post(tt.body, nil)
			} else {
				r = signed(tt.body)
			}
			if r.status != tt.status || r.json(t)["code"] != tt.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if tt.name == "partial" && !strings.Contains(string(r.body), `"sCode":"51400"`) {
				t.Fatalf("per-order result missing: %s", r.body)
			}
		})
	}
	if open := s.venues[VenueOKX].openOrders(); len(open) != 0 {
		t.Fatalf("open after: %+v", open)
	}
}

func TestBybitCancelAllRules(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueBybit}, Clock: clk.Now})
	vi := s.Info().Venues[VenueBybit]
	c := vi.Credentials
	if _, err := s.AddOrders(VenueBybit, "bybit-", []Order{
		{Instrument: "BTCUSDT", Category: "spot"}, {Instrument: "BTCUSDT", Category: "linear"}, {Instrument: "ETHPERP", Category: "linear"},
	}); err != nil {
		t.Fatal(err)
	}
	cancel := func(body string, signed bool) map[string]any {
		h := map[string]string{"Content-Type": "application/json"}
		if signed {
			h = bybitHeaders(c, body, clk.Now(), "5000")
		}
		return do(t, nil, "POST", vi.BaseURL+"/v5/order/cancel-all", []byte(body), h).json(t)
	}
	if m := cancel(`{"category":"spot"}`, false); m["retCode"] != float64(10003) {
		t.Fatalf("unsigned: %v", m)
	}
	if m := cancel(`{"category":"linear"}`, true); m["retCode"] != float64(10001) {
		t.Fatalf("linear without symbol, baseCoin or settleCoin: %v", m)
	}
	if m := cancel(`{"symbol":"BTCUSDT"}`, true); m["retCode"] != float64(10001) {
		t.Fatalf("without category: %v", m)
	}
	m := cancel(`{"category":"spot"}`, true)
	if m["retCode"] != float64(0) || fmt.Sprint(m["result"]) == "" || len(m["result"].(map[string]any)["list"].([]any)) != 1 {
		t.Fatalf("spot: %v", m)
	}
	m = cancel(`{"category":"linear","settleCoin":"USDC"}`, true)
	if l := m["result"].(map[string]any)["list"].([]any); len(l) != 1 {
		t.Fatalf("linear USDC: %v", m)
	}
	// Paging of the open linear orders: one USDT order left.
	q := url.Values{"category": {"linear"}, "limit": {"1"}}.Encode()
	r := do(t, nil, "GET", vi.BaseURL+"/v5/order/realtime?"+q, nil, bybitHeaders(c, q, clk.Now(), "5000"))
	if res := r.json(t)["result"].(map[string]any); len(res["list"].([]any)) != 1 || res["nextPageCursor"] != "" {
		t.Fatalf("realtime: %s", r.body)
	}
	if open := s.venues[VenueBybit].openOrders(); len(open) != 1 || open[0].Instrument != "BTCUSDT" || open[0].Category != "linear" {
		t.Fatalf("open after: %+v", open)
	}
}

func TestCoinbaseListPaging(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueCoinbase}, Clock: clk.Now})
	vi := s.Info().Venues[VenueCoinbase]
	u, _ := url.Parse(vi.BaseURL)
	if _, err := s.AddOrders(VenueCoinbase, "cb-", []Order{{Instrument: "BTC-USD"}, {Instrument: "BTC-USD"}, {Instrument: "ETH-USD"}}); err != nil {
		t.Fatal(err)
	}
	const path = "/api/v3/brokerage/orders/historical/batch"
	var ids []string
	cursor := ""
	for page := 0; ; page++ {
		q := "order_status=OPEN&limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		jwt := coinbaseJWT(t, vi.Credentials, "GET "+u.Host+path, fmt.Sprint("page-", page), clk.Now(), 120*time.Second)
		m := do(t, nil, "GET", vi.BaseURL+path+"?"+q, nil, map[string]string{"Authorization": "Bearer " + jwt}).json(t)
		for _, o := range m["orders"].([]any) {
			ids = append(ids, o.(map[string]any)["order_id"].(string))
		}
		if m["has_next"] != true {
			break
		}
		cursor = m["cursor"].(string)
		if page > 3 {
			t.Fatal("paging does not end")
		}
	}
	if len(ids) != 3 || ids[0] != "cb-1000003" {
		t.Fatalf("ids = %v", ids)
	}
	r := do(t, nil, "POST", vi.BaseURL+"/api/v3/brokerage/orders/batch_cancel", []byte(`{"order_ids":["cb-1000001"]}`), nil)
	if r.status != 401 || len(s.venues[VenueCoinbase].openOrders()) != 3 {
		t.Fatalf("unsigned batch_cancel: %d %s", r.status, r.body)
	}
}
