package bybit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
)

type cred map[string]secret.Value

func (c cred) Field(n string) (secret.Value, error) {
	if v, ok := c[n]; ok {
		return v, nil
	}
	return secret.Value{}, errors.New("no field " + n)
}

func creds(key, sec string) venue.Credentials {
	return func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldAPIKey: secret.FromString(key), FieldSecret: secret.FromString(sec)})
	}
}

func newVenue(t *testing.T, key, sec string, now func() time.Time, window time.Duration) *Venue {
	t.Helper()
	v, err := New(Options{Credentials: creds(key, sec), Now: now, RecvWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGolden checks Sign and Authenticate against testdata/golden.json
// (values computed with python3, see its "source").
func TestGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		APIKey string `json:"api_key"`
		Secret string
		Cases  []struct {
			Name, Timestamp, Method, Query, Body, Prehash, Sign string
			RecvWindow                                          string `json:"recv_window"`
		}
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			payload := Payload(c.Method, c.Query, []byte(c.Body))
			if pre := c.Timestamp + g.APIKey + c.RecvWindow + string(payload); pre != c.Prehash {
				t.Fatalf("prehash %q, want %q", pre, c.Prehash)
			}
			if got := Sign([]byte(g.Secret), c.Timestamp, g.APIKey, c.RecvWindow, payload); got != c.Sign {
				t.Fatalf("sign %s, want %s", got, c.Sign)
			}
			ms, _ := strconv.ParseInt(c.Timestamp, 10, 64)
			rw, _ := strconv.Atoi(c.RecvWindow)
			v := newVenue(t, g.APIKey, g.Secret, func() time.Time { return time.UnixMilli(ms) }, time.Duration(rw)*time.Millisecond)
			u := "https://api.bybit.com/v5/x"
			if c.Query != "" {
				u += "?" + c.Query
			}
			r, _ := http.NewRequest(c.Method, u, strings.NewReader(c.Body))
			if err := v.Authenticate(context.Background(), r, []byte(c.Body)); err != nil {
				t.Fatal(err)
			}
			if r.Header.Get(HeaderSign) != c.Sign || r.Header.Get(HeaderTimestamp) != c.Timestamp || r.Header.Get(HeaderRecvWindow) != c.RecvWindow {
				t.Fatalf("headers %v", r.Header)
			}
		})
	}
}

// TestSignatureAcceptedBySandbox has the sandbox's independent verifier
// check requests signed by Authenticate, including SDK-style ones.
func TestSignatureAcceptedBySandbox(t *testing.T) {
	const key, sec = "QW3RT8YU1IOP5ASD7F", "CANARYbybitSECRET0123456789abcdefghij"
	now := time.UnixMilli(1763899200000)
	v := newVenue(t, key, sec, func() time.Time { return now }, 0)
	sdk := map[string]string{
		HeaderKey: "kst_test_sdkToken", HeaderTimestamp: "1", HeaderRecvWindow: "99999999", HeaderSign: "00", HeaderSignType: "2",
	}
	tests := []struct {
		name, method, url, body string
		hdr                     map[string]string
	}{
		{"get", "GET", "https://api.bybit.com/v5/account/wallet-balance?accountType=UNIFIED&coin=BTC,USDT", "", nil},
		{"post", "POST", "https://api.bybit.com/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"1"}`, nil},
		{"sdk get", "GET", "https://api.bybit.com/v5/order/realtime?category=spot&symbol=BTCUSDT", "", sdk},
		{"sdk post", "POST", "https://api.bybit.com/v5/order/cancel", `{"category":"spot","symbol":"BTCUSDT","orderId":"1"}`, sdk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			for k, val := range tt.hdr {
				r.Header.Set(k, val)
			}
			if tt.hdr != nil {
				if tok, ok := v.BotToken(r.Header, r.URL.RawQuery); !ok || tok != "kst_test_sdkToken" {
					t.Fatalf("BotToken = %q, %v", tok, ok)
				}
			}
			if err := v.Authenticate(context.Background(), r, []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			check := func(q, body string) error {
				return sandbox.VerifyBybit(tt.method, q, []byte(body), r.Header, secret.FromString(key), secret.FromString(sec), now)
			}
			if err := check(r.URL.RawQuery, tt.body); err != nil {
				t.Fatalf("sandbox refuses: %v", err)
			}
			if err := check(r.URL.RawQuery+"&x=1", tt.body+" "); !errors.Is(err, sandbox.ErrBybitSignature) {
				t.Fatalf("changed request: %v", err)
			}
			if err := sandbox.VerifyBybit(tt.method, r.URL.RawQuery, []byte(tt.body), r.Header, secret.FromString(key), secret.FromString(sec), now.Add(6*time.Second)); !errors.Is(err, sandbox.ErrBybitTimestamp) {
				t.Fatalf("late request: %v", err)
			}
		})
	}
}

// TestEndToEndSandbox drives the running Bybit emulator over loopback.
func TestEndToEndSandbox(t *testing.T) {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueBybit}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info := s.Info().Venues[sandbox.VenueBybit]
	v := newVenue(t, info.Credentials["api_key"], info.Credentials["secret"], nil, 0)
	send := func(method, path, body string) (map[string]any, http.Header) {
		t.Helper()
		r, _ := http.NewRequest(method, info.BaseURL+path, bytes.NewReader([]byte(body)))
		r.Header.Set(HeaderKey, "kst_live_sdk")
		r.Header.Set(HeaderSign, "junk")
		if err := v.Authenticate(context.Background(), r, []byte(body)); err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var m map[string]any
		if res.StatusCode != 200 || json.Unmarshal(b, &m) != nil || m["retCode"] != float64(0) {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		v.Observe(res, time.Now())
		return m, res.Header
	}
	send("GET", "/v5/account/wallet-balance?accountType=UNIFIED", "")
	m, h := send("POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.01","price":"30000","orderLinkId":"bot-7"}`)
	if h.Get(HeaderLimit) == "" || h.Get(HeaderLimitStatus) == "" {
		t.Fatalf("no limit headers: %v", h)
	}
	id := m["result"].(map[string]any)["orderId"].(string)
	send("GET", "/v5/order/realtime?category=spot", "")
	send("POST", "/v5/order/cancel", `{"category":"spot","symbol":"BTCUSDT","orderId":"`+id+`"}`)
	if o := s.Orders(sandbox.VenueBybit); len(o) != 1 || o[0].ClientOrderID != "bot-7" || o[0].Status != sandbox.OrderCancelled {
		t.Fatalf("orders %+v", o)
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"no credentials", Options{}, false},
		{"default window", Options{Credentials: creds("k", "s")}, true},
		{"window too long", Options{Credentials: creds("k", "s"), RecvWindow: 2 * time.Minute}, false},
		{"negative window", Options{Credentials: creds("k", "s"), RecvWindow: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.o); (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
	const canary = "CANARY-bybit-key-1234"
	v, _ := New(Options{Credentials: func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldAPIKey: secret.FromString(canary)})
	}})
	r, _ := http.NewRequest("GET", "https://api.bybit.com/v5/account/wallet-balance", nil)
	if err := v.Authenticate(context.Background(), r, nil); err == nil || strings.Contains(err.Error(), canary) {
		t.Fatalf("err = %v", err)
	}
}

func TestClassify(t *testing.T) {
	v := newVenue(t, "k", "s", nil, 0)
	tests := []struct{ name, method, path, want string }{
		{"tickers", "GET", "/v5/market/tickers", venue.OpMarketRead},
		{"balance", "GET", "/v5/account/wallet-balance", venue.OpAccountRead},
		{"open orders", "GET", "/v5/order/realtime", venue.OpOrderRead},
		{"create", "POST", "/v5/order/create", venue.OpOrderPlace},
		{"cancel", "POST", "/v5/order/cancel", venue.OpOrderCancel},
		{"cancel all", "POST", "/v5/order/cancel-all", venue.OpOrderCancelAll},
		{"withdraw", "POST", "/v5/asset/withdraw/create", venue.OpWalletWithdraw},
		{"transfer", "POST", "/v5/asset/transfer/inter-transfer", venue.OpWalletTransfer},
		{"update api", "POST", "/v5/user/update-api", venue.OpAPIKeyManage},
		{"query api is a read", "GET", "/v5/user/query-api", venue.OpAccountRead},
		{"batch unmapped", "POST", "/v5/order/create-batch", ""},
		{"amend unmapped", "POST", "/v5/order/amend", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if op, _ := v.Classify(&venue.Request{Method: tt.method, Path: tt.path}); op != tt.want {
				t.Fatalf("%s %s = %q, want %q", tt.method, tt.path, op, tt.want)
			}
		})
	}
}

// TestNormalize: orders are read as Bybit executes them — a Market
// order's price is ignored, a spot market order's qty read in the unit(s)
// the account may use, triggerPrice kept, options counted in contracts.
func TestNormalize(t *testing.T) {
	v := newVenue(t, "k", "s", nil, 0)
	tests := []struct {
		name, body string
		want       *venue.Order
	}{
		{"spot limit", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"30000","orderLinkId":"x1"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: "0.1", Price: "30000", ClientOrderID: "x1"}},
		{"spot market buy defaults to quote", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"100"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "market", Notional: "100", Market: true}},
		{"spot market buy base unit: either reading", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"0.01","marketUnit":"baseCoin"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "market", Quantity: "0.01", Notional: "0.01", Market: true}},
		{"spot market sell defaults to base", `{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"2","price":"1"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "market", Quantity: "2", Market: true}},
		{"spot market sell quote unit: either reading", `{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"50","marketUnit":"quoteCoin"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "market", Quantity: "50", Notional: "50", Market: true}},
		{"linear market with a price of its own", `{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":2,"price":"1"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "market", Quantity: "2", Market: true}},
		{"conditional limit", `{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1","price":"30000","triggerPrice":"31000","triggerDirection":1}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: "1", Price: "30000", TriggerPrice: "31000"}},
		{"conditional market", `{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"1","triggerPrice":"29000","orderFilter":"StopOrder"}`,
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "market", Quantity: "1", TriggerPrice: "29000", Market: true}},
		{"option", `{"category":"option","symbol":"BTC-30DEC22-18000-C","side":"Buy","orderType":"Limit","qty":"1","price":"500","orderLinkId":"o1"}`,
			&venue.Order{Instrument: "BTC-30DEC22-18000-C", Side: "buy", Type: "limit", Quantity: "1", Price: "500", Contracts: true, ClientOrderID: "o1"}},
		{"option priced by IV", `{"category":"option","symbol":"BTC-30DEC22-18000-C","side":"Buy","orderType":"Limit","qty":"1","price":"500","orderIv":"0.1"}`, nil},
		{"unknown category", `{"category":"margin","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1","price":"1"}`, nil},
		{"unknown order type", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Stop","qty":"1"}`, nil},
		{"bad side", `{"category":"spot","symbol":"BTCUSDT","side":"Long","orderType":"Limit","qty":"1"}`, nil},
		{"no qty", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit"}`, nil},
		{"not json", `category=spot`, nil},
		{"bad marketUnit", `{"category":"spot","symbol":"B","side":"Buy","orderType":"Market","qty":"1","marketUnit":[]}`, nil},
		{"unknown marketUnit", `{"category":"spot","symbol":"B","side":"Buy","orderType":"Market","qty":"1","marketUnit":"contracts"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := v.Normalize(&venue.Request{Method: "POST", Path: "/v5/order/create", Body: []byte(tt.body)})
			if tt.want == nil {
				if !errors.Is(err, ErrMalformedOrder) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(o, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", o, err, tt.want)
			}
		})
	}
	if o, err := v.Normalize(&venue.Request{Method: "GET", Path: "/v5/market/tickers"}); o != nil || err != nil {
		t.Fatal("non-order normalized")
	}
	if v.ClientOrderIDField() != "orderLinkId" {
		t.Fatal("client order id field")
	}
}

// FuzzParseOrder: an order read from any body has a size; a Market order
// carries no limit price; reading is deterministic.
func FuzzParseOrder(f *testing.F) {
	f.Add([]byte(`{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"30000","orderLinkId":"x1"}`))
	f.Add([]byte(`{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":1,"marketUnit":"quoteCoin"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ParseOrder(body)
		if err != nil {
			return
		}
		if o.Quantity == "" && o.Notional == "" {
			t.Fatalf("%s: no size: %+v", body, o)
		}
		if o.Type == "market" && (o.Price != "" || !o.Market) {
			t.Fatalf("%s: a market order read with a limit price: %+v", body, o)
		}
		o2, err := ParseOrder(body)
		if err != nil || !reflect.DeepEqual(o, o2) {
			t.Fatalf("%s: read twice: %+v, %+v %v", body, o, o2, err)
		}
	})
}

func TestRateLimiter(t *testing.T) {
	v := newVenue(t, "k", "s", nil, 0)
	t0 := time.UnixMilli(1700000000000)
	req := func(method, path string) *http.Request {
		return &http.Request{Method: method, URL: &url.URL{Path: path}}
	}
	resp := func(r *http.Request, status int, h map[string]string) *http.Response {
		hh := http.Header{}
		for k, val := range h {
			hh.Set(k, val)
		}
		return &http.Response{StatusCode: status, Header: hh, Request: r}
	}
	reset := strconv.FormatInt(t0.Add(800*time.Millisecond).UnixMilli(), 10)
	tests := []struct {
		name   string
		resp   *http.Response
		op     string
		at     time.Duration
		wantOK bool
		wait   time.Duration
	}{
		{"plenty left", resp(req("POST", "/v5/order/create"), 200, map[string]string{HeaderLimit: "20", HeaderLimitStatus: "5", HeaderLimitReset: reset}), venue.OpOrderPlace, 0, true, 0},
		{"5% left blocks op", resp(req("POST", "/v5/order/create"), 200, map[string]string{HeaderLimit: "20", HeaderLimitStatus: "1", HeaderLimitReset: reset}), venue.OpOrderPlace, 0, false, 800 * time.Millisecond},
		{"other op unaffected", nil, venue.OpAccountRead, 0, true, 0},
		{"reset passed", nil, venue.OpOrderPlace, 800 * time.Millisecond, true, 0},
		{"10006 with status 0", resp(req("POST", "/v5/order/cancel"), 200, map[string]string{HeaderLimit: "20", HeaderLimitStatus: "0"}), venue.OpOrderCancel, time.Second, false, time.Second},
		{"429 blocks all", resp(req("GET", "/v5/market/tickers"), 429, map[string]string{"Retry-After": "3"}), venue.OpAccountRead, 2 * time.Second, false, 3 * time.Second},
		{"after 429", nil, venue.OpAccountRead, 5 * time.Second, true, 0},
		{"bad headers ignored", resp(req("POST", "/v5/order/create"), 200, map[string]string{HeaderLimit: "x", HeaderLimitStatus: "0"}), venue.OpOrderPlace, 6 * time.Second, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0.Add(tt.at)
			if tt.resp != nil {
				v.Observe(tt.resp, now)
			}
			wait, ok := v.Allow(tt.op, now)
			if ok != tt.wantOK || wait != tt.wait {
				t.Fatalf("Allow = %v, %v; want %v, %v", wait, ok, tt.wait, tt.wantOK)
			}
		})
	}
}

func Example() {
	v, err := New(Options{Credentials: creds("my-key", "my-secret"), Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	if err != nil {
		panic(err)
	}
	r, _ := http.NewRequest("GET", "https://api.bybit.com/v5/account/wallet-balance?accountType=UNIFIED", nil)
	if err := v.Authenticate(context.Background(), r, nil); err != nil {
		panic(err)
	}
	fmt.Println(r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderRecvWindow))
	// Output: 1700000000000 5000
}
