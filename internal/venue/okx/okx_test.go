package okx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
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

func creds(key, sec, pass string) venue.Credentials {
	return func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldAPIKey: secret.FromString(key), FieldSecret: secret.FromString(sec), FieldPassphrase: secret.FromString(pass)})
	}
}

func newVenue(t *testing.T, key, sec, pass string, now func() time.Time) *Venue {
	t.Helper()
	v, err := New(Options{Credentials: creds(key, sec, pass), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type golden struct {
	Secret string
	Cases  []struct {
		Name, Timestamp, Method, Path, Query, Body, Prehash, Sign string
	}
}

// TestGolden checks Prehash, Sign and Authenticate against
// testdata/golden.json (values computed with python3, see its "source").
func TestGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			pre := Prehash(c.Timestamp, c.Method, c.Path, c.Query, []byte(c.Body))
			if string(pre) != c.Prehash {
				t.Fatalf("prehash %q, want %q", pre, c.Prehash)
			}
			if got := Sign([]byte(g.Secret), pre); got != c.Sign {
				t.Fatalf("sign %s, want %s", got, c.Sign)
			}
			ts, _ := time.Parse(TimestampFormat, c.Timestamp)
			v := newVenue(t, "key", g.Secret, "pass", func() time.Time { return ts })
			u := "https://www.okx.com" + c.Path
			if c.Query != "" {
				u += "?" + c.Query
			}
			r, _ := http.NewRequest(c.Method, u, strings.NewReader(c.Body))
			if err := v.Authenticate(context.Background(), r, []byte(c.Body)); err != nil {
				t.Fatal(err)
			}
			if r.Header.Get(HeaderSign) != c.Sign || r.Header.Get(HeaderTimestamp) != c.Timestamp {
				t.Fatalf("headers %v", r.Header)
			}
		})
	}
}

// TestSignatureAcceptedBySandbox has the sandbox's independent verifier
// check requests signed by Authenticate, including SDK-style requests that
// carry the bot's kst_ token, timestamp, passphrase and signature.
func TestSignatureAcceptedBySandbox(t *testing.T) {
	const key, sec, pass = "37c541a1-c4f8-4c39-8a21-1c2d5e0f9a77", "5D8E2A4C9B0F1E3D7A6C8B2E4F0A1D3C", "Canary-Pass-77"
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	v := newVenue(t, key, sec, pass, func() time.Time { return now })
	sdk := map[string]string{
		HeaderKey: "kst_live_botTokenFromSDK", HeaderSign: "bm90IGEgc2lnbmF0dXJl", HeaderTimestamp: "1999-01-01T00:00:00.000Z",
		HeaderPassphrase: "placeholder", "Content-Type": "application/json",
	}
	tests := []struct {
		name, method, url, body string
		hdr                     map[string]string
	}{
		{"get with query", "GET", "https://www.okx.com/api/v5/account/balance?ccy=BTC,ETH", "", nil},
		{"post order", "POST", "https://www.okx.com/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"2"}`, nil},
		{"sdk post", "POST", "https://www.okx.com/api/v5/trade/cancel-order", `{"instId":"BTC-USDT","ordId":"1"}`, sdk},
		{"escaped path", "GET", "https://www.okx.com/api/v5/trade/order?instId=BTC%2DUSDT&ordId=1", "", sdk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			for k, val := range tt.hdr {
				r.Header.Set(k, val)
			}
			if tt.hdr != nil {
				if tok, ok := v.BotToken(r.Header, r.URL.RawQuery); !ok || tok != "kst_live_botTokenFromSDK" {
					t.Fatalf("BotToken = %q, %v", tok, ok)
				}
			}
			if err := v.Authenticate(context.Background(), r, []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if r.Header.Get(HeaderSimulated) != "" {
				t.Fatal("live request carries x-simulated-trading")
			}
			check := func(body string) error {
				return sandbox.VerifyOKX(tt.method, r.URL.RequestURI(), []byte(body), r.Header,
					secret.FromString(key), secret.FromString(sec), secret.FromString(pass), now)
			}
			if err := check(tt.body); err != nil {
				t.Fatalf("sandbox refuses: %v", err)
			}
			if err := check(tt.body + " "); !errors.Is(err, sandbox.ErrOKXSignature) {
				t.Fatalf("changed body: %v", err)
			}
		})
	}
}

func TestTestEndpointHeader(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
	for _, test := range []bool{true, false} {
		r, _ := http.NewRequest("GET", "https://www.okx.com/api/v5/account/balance", nil)
		r.Header.Set(HeaderSimulated, "1") // the bot's choice never counts
		ctx := venue.WithTestEndpoint(context.Background(), test)
		if err := v.Authenticate(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get(HeaderSimulated) == "1"; got != test {
			t.Fatalf("test=%v: x-simulated-trading %q", test, r.Header.Get(HeaderSimulated))
		}
	}
}

// TestEndToEndSandbox sends signed requests over loopback to the running
// OKX emulator: a place, a pending list and a cancel succeed, and an order
// is recorded with its client order id.
func TestEndToEndSandbox(t *testing.T) {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueOKX}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info := s.Info().Venues[sandbox.VenueOKX]
	c := info.Credentials
	v := newVenue(t, c["api_key"], c["secret"], c["passphrase"], nil)
	send := func(method, path, body string) map[string]any {
		t.Helper()
		r, _ := http.NewRequest(method, info.BaseURL+path, bytes.NewReader([]byte(body)))
		r.Header.Set(HeaderKey, "kst_live_sdk") // SDK leftovers
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
		if res.StatusCode != 200 || json.Unmarshal(b, &m) != nil || m["code"] != "0" {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		if strings.Contains(string(b), c["secret"]) || strings.Contains(string(b), c["passphrase"]) {
			t.Fatal("answer contains a credential")
		}
		return m
	}
	send("GET", "/api/v5/account/balance?ccy=USDT", "")
	m := send("POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"bot42","side":"buy","ordType":"limit","px":"30000","sz":"0.01"}`)
	id := m["data"].([]any)[0].(map[string]any)["ordId"].(string)
	send("GET", "/api/v5/trade/orders-pending?instType=SPOT", "")
	send("POST", "/api/v5/trade/cancel-order", `{"instId":"BTC-USDT","ordId":"`+id+`"}`)
	if o := s.Orders(sandbox.VenueOKX); len(o) != 1 || o[0].ClientOrderID != "bot42" || o[0].Status != sandbox.OrderCancelled {
		t.Fatalf("orders %+v", o)
	}
	if st := s.Stats(sandbox.VenueOKX); st.AuthFailures != 0 {
		t.Fatalf("auth failures %d", st.AuthFailures)
	}
}

func TestAuthenticateCredentialErrors(t *testing.T) {
	const canary = "CANARY-okx-secret-5a5a"
	v, _ := New(Options{Credentials: func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldAPIKey: secret.FromString("k"), FieldSecret: secret.FromString(canary)})
	}})
	r, _ := http.NewRequest("GET", "https://www.okx.com/api/v5/account/balance", nil)
	err := v.Authenticate(context.Background(), r, nil)
	if err == nil || strings.Contains(err.Error(), canary) {
		t.Fatalf("err = %v", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without credentials succeeded")
	}
	r, _ = http.NewRequest("GET", "https://www.okx.com/api/v5/account/balance", nil)
	bad := newVenue(t, "k\r\nX-Evil: 1", "s", "p", nil)
	if err := bad.Authenticate(context.Background(), r, nil); err == nil {
		t.Fatal("header injection through api_key accepted")
	}
}

func TestClassify(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
	tests := []struct{ name, method, path, want string }{
		{"ticker", "GET", "/api/v5/market/ticker", venue.OpMarketRead},
		{"balance", "GET", "/api/v5/account/balance", venue.OpAccountRead},
		{"pending", "GET", "/api/v5/trade/orders-pending", venue.OpOrderRead},
		{"order get", "GET", "/api/v5/trade/order", venue.OpOrderRead},
		{"place", "POST", "/api/v5/trade/order", venue.OpOrderPlace},
		{"cancel", "POST", "/api/v5/trade/cancel-order", venue.OpOrderCancel},
		{"cancel batch", "POST", "/api/v5/trade/cancel-batch-orders", venue.OpOrderCancelAll},
		{"withdraw", "POST", "/api/v5/asset/withdrawal", venue.OpWalletWithdraw},
		{"transfer", "POST", "/api/v5/asset/transfer", venue.OpWalletTransfer},
		{"apikey", "POST", "/api/v5/users/subaccount/apikey", venue.OpAPIKeyManage},
		{"batch place (read order by order)", "POST", "/api/v5/trade/batch-orders", venue.OpOrderPlace},
		{"fills history", "GET", "/api/v5/trade/fills-history", venue.OpOrderRead},
		{"fills history is no write", "POST", "/api/v5/trade/fills-history", ""},
		{"archived orders", "GET", "/api/v5/trade/orders-history-archive", venue.OpOrderRead},
		{"unknown", "DELETE", "/api/v5/account/balance", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if op, _ := v.Classify(&venue.Request{Method: tt.method, Path: tt.path}); op != tt.want {
				t.Fatalf("%s %s = %q, want %q", tt.method, tt.path, op, tt.want)
			}
		})
	}
}

// TestNormalize: orders are read as OKX executes them — a market order's
// px is ignored, its sz read in base and/or quote currency as tdMode and
// tgtCcy say, derivatives counted in contracts.
func TestNormalize(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
	tests := []struct {
		name, body string
		want       *venue.Order
		err        bool
	}{
		{"limit", `{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"b15","side":"buy","ordType":"limit","px":"2.15","sz":"2"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "limit", Quantity: "2", Price: "2.15", ClientOrderID: "b15"}, false},
		{"post only", `{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"post_only","px":"40000","sz":"1"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "sell", Type: "post_only", Quantity: "1", Price: "40000"}, false},
		{"market quote", `{"instId":"BTC-USDT","tdMode":"cash","side":"BUY","ordType":"market","sz":"100","tgtCcy":"quote_ccy"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "market", Notional: "100", Market: true}, false},
		{"market buy defaults to quote", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"100"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "market", Notional: "100", Market: true}, false},
		{"market with a px of its own", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","px":"1","sz":"10","tgtCcy":"base_ccy"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "market", Quantity: "10", Market: true}, false},
		{"market sell numeric sz", `{"instId":"ETH-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":0.5}`,
			&venue.Order{Instrument: "ETH-USDT", Side: "sell", Type: "market", Quantity: "0.5", Market: true}, false},
		{"margin market buy in base: either reading", `{"instId":"BTC-USDT","tdMode":"cross","side":"buy","ordType":"market","sz":"2","tgtCcy":"base_ccy"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "market", Quantity: "2", Notional: "2", Market: true}, false},
		{"margin market sell in quote: either reading", `{"instId":"BTC-USDT","tdMode":"isolated","side":"sell","ordType":"market","sz":"2","tgtCcy":"quote_ccy"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "sell", Type: "market", Quantity: "2", Notional: "2", Market: true}, false},
		{"swap in contracts", `{"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"buy","ordType":"limit","px":"40000","sz":"3"}`,
			&venue.Order{Instrument: "BTC-USDT-SWAP", Side: "buy", Type: "limit", Quantity: "3", Price: "40000", Contracts: true}, false},
		{"optimal limit ioc", `{"instId":"BTC-USD-250328","tdMode":"cross","side":"sell","ordType":"optimal_limit_ioc","px":"1","sz":"3"}`,
			&venue.Order{Instrument: "BTC-USD-250328", Side: "sell", Type: "optimal_limit_ioc", Quantity: "3", Market: true, Contracts: true}, false},
		{"unknown ordType", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"new_kind","px":"1","sz":"3"}`,
			&venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "new_kind", Quantity: "3", Price: "1", Market: true}, false},
		{"other trade quote currency", `{"instId":"BTC-USD","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"3","tradeQuoteCcy":"USDT"}`, nil, true},
		{"unknown tgtCcy", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"3","tgtCcy":"both"}`, nil, true},
		{"bad side", `{"instId":"BTC-USDT","side":"hold","ordType":"limit","sz":"1"}`, nil, true},
		{"no size", `{"instId":"BTC-USDT","side":"buy","ordType":"limit"}`, nil, true},
		{"array", `[{"instId":"BTC-USDT"}]`, nil, true},
		{"object size", `{"instId":"BTC-USDT","side":"buy","ordType":"limit","sz":{"a":1}}`, nil, true},
		{"trailing", `{"instId":"BTC-USDT","side":"buy","ordType":"limit","sz":"1"}{}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := v.Normalize(&venue.Request{Method: "POST", Path: "/api/v5/trade/order", Body: []byte(tt.body)})
			if tt.err {
				if !errors.Is(err, ErrMalformedOrder) {
					t.Fatalf("err = %v, want ErrMalformedOrder", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(o, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", o, err, tt.want)
			}
		})
	}
	if o, err := v.Normalize(&venue.Request{Method: "GET", Path: "/api/v5/account/balance"}); o != nil || err != nil {
		t.Fatalf("non-order: %v %v", o, err)
	}
	if v.ClientOrderIDField() != "clOrdId" {
		t.Fatal("client order id field")
	}
}

// FuzzParseOrder: an order read from any body has a size; one that
// executes at the market carries no limit price; contracts only for
// derivatives; and reading is deterministic.
func FuzzParseOrder(f *testing.F) {
	f.Add([]byte(`{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"b15","side":"buy","ordType":"limit","px":"2.15","sz":"2"}`))
	f.Add([]byte(`{"instId":"BTC-USDT","side":"sell","ordType":"market","sz":1e3,"tgtCcy":"quote_ccy"}`))
	f.Add([]byte(`{"instId":"BTC-USDT-SWAP","side":"sell","ordType":"optimal_limit_ioc","sz":"1","px":"5"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ParseOrder(body)
		if err != nil {
			return
		}
		if o.Quantity == "" && o.Notional == "" {
			t.Fatalf("%s: no size: %+v", body, o)
		}
		if (o.Type == "market" || o.Type == "optimal_limit_ioc") && (o.Price != "" || !o.Market) {
			t.Fatalf("%s: a market order read with a limit price: %+v", body, o)
		}
		if o.Contracts != (strings.Count(o.Instrument, "-") != 1) {
			t.Fatalf("%s: contracts %v for %s", body, o.Contracts, o.Instrument)
		}
		o2, err := ParseOrder(body)
		if err != nil || !reflect.DeepEqual(o, o2) {
			t.Fatalf("%s: read twice: %+v, %+v %v", body, o, o2, err)
		}
	})
}

func TestRateLimiter(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
	t0 := time.Unix(1700000000, 0)
	// order.place: 60 per 2 s, refused within 5%: 57 allowed.
	n := 0
	for i := 0; i < 100; i++ {
		if _, ok := v.Allow(venue.OpOrderPlace, t0); ok {
			n++
		}
	}
	if n != 57 {
		t.Fatalf("allowed %d in one window, want 57", n)
	}
	if wait, ok := v.Allow(venue.OpOrderPlace, t0.Add(500*time.Millisecond)); ok || wait != 1500*time.Millisecond {
		t.Fatalf("Allow = %v, %v", wait, ok)
	}
	if _, ok := v.Allow(venue.OpAccountRead, t0); !ok {
		t.Fatal("other operation refused")
	}
	if _, ok := v.Allow(venue.OpOrderPlace, t0.Add(Window)); !ok {
		t.Fatal("next window refused")
	}
	// transfer: 2 per 2 s, both allowed.
	for i := 0; i < 2; i++ {
		if _, ok := v.Allow(venue.OpWalletTransfer, t0); !ok {
			t.Fatalf("transfer %d refused", i)
		}
	}
	// A 429 (code 50011) blocks everything for Retry-After.
	t1 := t0.Add(time.Minute)
	v.Observe(&http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"5"}}}, t1)
	if wait, ok := v.Allow(venue.OpMarketRead, t1.Add(time.Second)); ok || wait != 4*time.Second {
		t.Fatalf("after 429: %v, %v", wait, ok)
	}
	if _, ok := v.Allow(venue.OpMarketRead, t1.Add(5*time.Second)); !ok {
		t.Fatal("still blocked after Retry-After")
	}
	v.Observe(&http.Response{StatusCode: 429, Header: http.Header{}}, t1.Add(10*time.Second))
	if wait, ok := v.Allow(venue.OpMarketRead, t1.Add(10*time.Second)); ok || wait != defaultBackoff {
		t.Fatalf("429 without Retry-After: %v, %v", wait, ok)
	}
	v.Observe(nil, t1)
}

func Example() {
	v, err := New(Options{
		Credentials: creds("my-api-key", "my-secret", "my-passphrase"),
		Now:         func() time.Time { return time.Date(2020, 12, 8, 9, 8, 57, 715000000, time.UTC) },
	})
	if err != nil {
		panic(err)
	}
	r, _ := http.NewRequest("GET", "https://www.okx.com/api/v5/account/balance?ccy=BTC", nil)
	if err := v.Authenticate(context.Background(), r, nil); err != nil {
		panic(err)
	}
	op, _ := v.Classify(&venue.Request{Method: "GET", Path: "/api/v5/account/balance"})
	fmt.Println(op, r.Header.Get(HeaderTimestamp))
	// Output: account.read 2020-12-08T09:08:57.715Z
}
