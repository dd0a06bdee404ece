package binance_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
)

type cred map[string]string

func (c cred) Field(n string) (secret.Value, error) {
	if v, ok := c[n]; ok {
		return secret.FromString(v), nil
	}
	return secret.Value{}, errors.New("no field " + n)
}

func creds(c cred) venue.Credentials {
	return func(_ context.Context, fn func(venue.Credential) error) error { return fn(c) }
}

type vectors struct {
	V struct {
		APIKey    string `json:"apiKey"`
		SecretKey string `json:"secretKey"`
		Cases     []struct{ Name, Query, Body, Signature string }
	} `json:"binance_hmac_sha256"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.V.Cases) != 3 {
		t.Fatalf("%d vectors", len(v.V.Cases))
	}
	return v
}

// TestSignVectors: every published Binance vector through SignHMAC.
func TestSignVectors(t *testing.T) {
	v := loadVectors(t).V
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			if got := binance.SignHMAC([]byte(v.SecretKey), binance.Payload(c.Query, []byte(c.Body))); got != c.Signature {
				t.Fatalf("= %s, want %s", got, c.Signature)
			}
		})
	}
}

// TestAuthenticateVectors: the two query-only vectors reproduced by
// Authenticate from a bot query without timestamp (the second one sent
// with raw UTF-8, which keystile percent-encodes), with a bot-supplied
// signature, timestamp and recvWindow that must be replaced.
func TestAuthenticateVectors(t *testing.T) {
	v := loadVectors(t).V
	ven, err := binance.New(binance.Options{Credentials: creds(cred{"api_key": v.APIKey, "secret": v.SecretKey}),
		Now: func() time.Time { return time.UnixMilli(1499827319559) }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, botQuery, want string }{
		{"query only", "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1", v.Cases[0].Query + "&signature=" + v.Cases[0].Signature},
		{"sdk params replaced", "timestamp=1&symbol=LTCBTC&side=BUY&type=LIMIT&recvWindow=60000&timeInForce=GTC&quantity=1&price=0.1&signature=deadbeef", v.Cases[0].Query + "&signature=" + v.Cases[0].Signature},
		{"non-ASCII", "symbol=１２３４５６&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1", v.Cases[1].Query + "&signature=" + v.Cases[1].Signature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "https://api.binance.com/api/v3/order", nil)
			req.URL.RawQuery = tt.botQuery
			req.Header.Set("X-MBX-APIKEY", "kst_test_bot")
			if err := ven.Authenticate(context.Background(), req, nil); err != nil {
				t.Fatal(err)
			}
			if req.URL.RawQuery != tt.want || req.Header.Get("X-MBX-APIKEY") != v.APIKey {
				t.Fatalf("query %s\nwant  %s", req.URL.RawQuery, tt.want)
			}
		})
	}
}

func TestStripParams(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"keeps order and encoding", "b=2&a=%41&c=", "b=2&a=%41&c="},
		{"drops bot params", "signature=x&a=1&timestamp=2&recvWindow=3&b=4", "a=1&b=4"},
		{"drops encoded names", "sign%61ture=x&a=1", "a=1"},
		{"encodes non-ASCII and spaces", "s=é x", "s=%C3%A9%20x"},
		{"empty pairs", "&&a=1&", "a=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := binance.StripParams(tt.in); got != tt.want {
				t.Fatalf("= %q, want %q", got, tt.want)
			}
		})
	}
}

func startBinance(t *testing.T, o sandbox.Options) (*sandbox.Server, sandbox.VenueInfo) {
	t.Helper()
	o.Venues = []string{sandbox.VenueBinance}
	s, err := sandbox.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Info().Venues[sandbox.VenueBinance]
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func send(t *testing.T, v *binance.Venue, method, target, body string, h http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if err := v.Authenticate(context.Background(), req, []byte(body)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// TestAcceptedBySandbox: HMAC signatures pass the sandbox's independent
// verifier, for plain and SDK-style requests (kst_ token in X-MBX-APIKEY,
// bogus timestamp and signature in the query and the form body).
func TestAcceptedBySandbox(t *testing.T) {
	s, vi := startBinance(t, sandbox.Options{})
	v, err := binance.New(binance.Options{Credentials: creds(cred(vi.Credentials))})
	if err != nil {
		t.Fatal(err)
	}
	const tok = "kst_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000"
	sdk := http.Header{"X-Mbx-Apikey": {tok}, "Content-Type": {"application/x-www-form-urlencoded"}}
	if got, ok := v.BotToken(sdk, ""); !ok || got != tok {
		t.Fatalf("BotToken = %q %v", got, ok)
	}
	if _, ok := v.BotToken(http.Header{"X-Mbx-Apikey": {"realkey"}}, ""); ok {
		t.Fatal("BotToken took a non-kst value")
	}
	tests := []struct {
		name, method, target, body string
		h                          http.Header
	}{
		{"account", "GET", "/api/v3/account", "", nil},
		{"sdk order in query", "POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price=37000&newClientOrderId=cid-1&timestamp=1&recvWindow=60000&signature=00ff", "", sdk},
		{"sdk order in body", "POST", "/api/v3/order", "symbol=BTCUSDT&side=SELL&type=LIMIT&quantity=1&price=40000&newClientOrderId=cid-2&timestamp=1&signature=00ff", sdk},
		{"open orders", "GET", "/api/v3/openOrders?symbol=BTCUSDT", "", sdk},
		{"cancel", "DELETE", "/api/v3/order?symbol=BTCUSDT&origClientOrderId=cid-1", "", sdk},
		{"cancel all", "DELETE", "/api/v3/openOrders?symbol=BTCUSDT", "", sdk},
		{"public ticker", "GET", "/api/v3/ticker/price?symbol=BTCUSDT", "", sdk},
		{"user data stream (key only)", "POST", "/api/v3/userDataStream", "", sdk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := send(t, v, tt.method, vi.BaseURL+tt.target, tt.body, tt.h)
			if a.status != 200 {
				t.Fatalf("%d %s", a.status, a.raw)
			}
		})
	}
	o := s.Orders(sandbox.VenueBinance)
	if len(o) != 2 || o[0].ClientOrderID != "cid-1" || o[1].ClientOrderID != "cid-2" || o[0].Status != sandbox.OrderCancelled || o[1].Status != sandbox.OrderCancelled {
		t.Fatalf("orders %+v", o)
	}
	if st := s.Stats(sandbox.VenueBinance); st.AuthFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A wrong secret is refused with Binance's own error.
	bad, _ := binance.New(binance.Options{Credentials: creds(cred{"api_key": vi.Credentials["api_key"], "secret": "wrong"})})
	if a := send(t, bad, "GET", vi.BaseURL+"/api/v3/account", "", nil); a.status != 400 || a.body["code"] != float64(-1022) {
		t.Fatalf("wrong secret: %d %s", a.status, a.raw)
	}
}

// TestBodyRewritten: a form body that carried the bot's signature is
// rewritten consistently (Body, GetBody, ContentLength).
func TestBodyRewritten(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: creds(cred{"api_key": "k", "secret": "s"})})
	body := "symbol=BTCUSDT&side=BUY&signature=ff&quantity=1"
	req, _ := http.NewRequest("POST", "https://api.binance.com/api/v3/order", strings.NewReader(body))
	if err := v.Authenticate(context.Background(), req, []byte(body)); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(req.Body)
	rc, _ := req.GetBody()
	again, _ := io.ReadAll(rc)
	const want = "symbol=BTCUSDT&side=BUY&quantity=1"
	if string(got) != want || string(again) != want || req.ContentLength != int64(len(want)) {
		t.Fatalf("body %q %q %d", got, again, req.ContentLength)
	}
	q, _ := url.ParseQuery(req.URL.RawQuery)
	if q.Get("timestamp") == "" || q.Get("recvWindow") != "5000" || !strings.HasSuffix(req.URL.RawQuery, "&signature="+binance.SignHMAC([]byte("s"), binance.Payload(strings.TrimSuffix(req.URL.RawQuery, "&signature="+q.Get("signature")), []byte(want)))) {
		t.Fatalf("query %s", req.URL.RawQuery)
	}
	if _, err := binance.New(binance.Options{Credentials: creds(nil), RecvWindow: time.Minute + 1}); err == nil {
		t.Fatal("recv window above 60 s accepted")
	}
	if err := v.Authenticate(context.Background(), req, []byte(`{"a":1}`)); !errors.Is(err, binance.ErrBody) {
		t.Fatalf("json body: %v", err)
	}
}

// TestEd25519AcceptedBySandbox: with an Ed25519 private_key the signature
// is base64 Ed25519, percent-encoded, and the sandbox verifies it.
func TestEd25519AcceptedBySandbox(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	apiKey := strings.Repeat("Ed25519Key", 6) + "abcd"
	_, vi := startBinance(t, sandbox.Options{Credentials: map[string]map[string]string{
		sandbox.VenueBinance: {"api_key": apiKey, "private_key": pemKey}}})
	v, _ := binance.New(binance.Options{Credentials: creds(cred{"api_key": apiKey, "private_key": pemKey})})
	a := send(t, v, "POST", vi.BaseURL+"/api/v3/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&signature=x", "", nil)
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
}

// TestClockOffset: the sandbox's clock runs 20 s ahead; without the offset
// the timestamp falls outside recvWindow (-1021), with it the request
// passes.
func TestClockOffset(t *testing.T) {
	_, vi := startBinance(t, sandbox.Options{Clock: func() time.Time { return time.Now().Add(20 * time.Second) }})
	plain, _ := binance.New(binance.Options{Credentials: creds(cred(vi.Credentials))})
	if a := send(t, plain, "GET", vi.BaseURL+"/api/v3/account", "", nil); a.status != 400 || a.body["code"] != float64(-1021) {
		t.Fatalf("without offset: %d %s", a.status, a.raw)
	}
	synced, _ := binance.New(binance.Options{Credentials: creds(cred(vi.Credentials)), HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if a := send(t, synced, "GET", vi.BaseURL+"/api/v3/account", "", nil); a.status != 200 {
		t.Fatalf("with offset: %d %s", a.status, a.raw)
	}
	if off := synced.ClockOffset(); off < 19*time.Second || off > 21*time.Second {
		t.Fatalf("offset %v", off)
	}
	// An explicit BaseURL that does not answer leaves the offset at zero
	// and the request still goes out.
	broken, _ := binance.New(binance.Options{Credentials: creds(cred(vi.Credentials)), BaseURL: "http://127.0.0.1:1",
		HTTPClient: &http.Client{Timeout: time.Second}})
	if err := broken.SyncClock(context.Background(), nil); err == nil {
		t.Fatal("sync against a closed port succeeded")
	}
	if _, err := binance.New(binance.Options{Credentials: creds(nil), BaseURL: "not a url"}); err == nil {
		t.Fatal("bad base url accepted")
	}
}

func TestClassify(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: creds(nil)})
	tests := []struct{ method, path, want string }{
		{"GET", "/api/v3/ticker/price", venue.OpMarketRead},
		{"GET", "/api/v3/ticker", venue.OpMarketRead},
		{"GET", "/api/v3/depth", venue.OpMarketRead},
		{"GET", "/api/v3/klines", venue.OpMarketRead},
		{"GET", "/api/v3/exchangeInfo", venue.OpMarketRead},
		{"GET", "/api/v3/account", venue.OpAccountRead},
		{"GET", "/api/v3/myTrades", venue.OpAccountRead},
		{"GET", "/api/v3/openOrders", venue.OpOrderRead},
		{"GET", "/api/v3/allOrders", venue.OpOrderRead},
		{"POST", "/api/v3/order", venue.OpOrderPlace},
		{"POST", "/api/v3/orderList/oco", venue.OpOrderPlace},
		{"DELETE", "/api/v3/order", venue.OpOrderCancel},
		{"DELETE", "/api/v3/openOrders", venue.OpOrderCancelAll},
		{"POST", "/sapi/v1/capital/withdraw/apply", venue.OpWalletWithdraw},
		{"POST", "/sapi/v1/asset/transfer", venue.OpWalletTransfer},
		{"GET", "/sapi/v1/account/apiRestrictions", venue.OpAPIKeyManage},
		{"POST", "/sapi/v1/account/apiRestrictions/ipRestriction", venue.OpAPIKeyManage},
		{"PUT", "/api/v3/order", ""},
		{"GET", "/sapi/v1/unknown", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			if op, _ := v.Classify(&venue.Request{Method: tt.method, Path: tt.path}); op != tt.want {
				t.Errorf("= %q, want %q", op, tt.want)
			}
		})
	}
}

// TestNormalize: orders are read as Binance executes them — a MARKET
// order's price is ignored, stop orders carry their trigger, one-cancels-
// the-other lists their legs — and lists that place two orders are not
// read at all.
func TestNormalize(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: creds(nil)})
	tests := []struct {
		name, path, query, body string
		want                    *venue.Order
		err                     error
	}{
		{"limit in query", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price=37000&newClientOrderId=c1", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: "0.5", Price: "37000", ClientOrderID: "c1"}, nil},
		{"market by quote in body", "/api/v3/order", "", "symbol=ETHUSDT&side=SELL&type=MARKET&quoteOrderQty=100",
			&venue.Order{Instrument: "ETHUSDT", Side: "sell", Type: "market", Notional: "100", Market: true}, nil},
		{"market with a price of its own", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=10&price=1", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "market", Quantity: "10", Market: true}, nil},
		{"market, lower-case type", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=market&quantity=10&price=1", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "market", Quantity: "10", Market: true}, nil},
		{"market with both sizes", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&quoteOrderQty=50", "", nil, binance.ErrOrder},
		{"limit maker", "/api/v3/order", "symbol=BTCUSDT&side=SELL&type=LIMIT_MAKER&quantity=1&price=40000", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "limit_maker", Quantity: "1", Price: "40000"}, nil},
		{"stop loss", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=1&stopPrice=39000&price=1", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "stop_loss", Quantity: "1", TriggerPrice: "39000", Market: true}, nil},
		{"trailing take profit", "/api/v3/order", "symbol=BTCUSDT&side=SELL&type=TAKE_PROFIT&quantity=1&trailingDelta=100", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "take_profit", Quantity: "1", Market: true}, nil},
		{"stop loss limit", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=STOP_LOSS_LIMIT&quantity=1&stopPrice=39000&price=39500&timeInForce=GTC", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "stop_loss_limit", Quantity: "1", Price: "39500", TriggerPrice: "39000"}, nil},
		{"pegged limit", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1&pegPriceType=PRIMARY_PEG", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: "1", Price: "1", Market: true}, nil},
		{"unknown type", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=NEW_KIND&quantity=1&price=1&stopPrice=2", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "new_kind", Quantity: "1", Price: "1", TriggerPrice: "2", Market: true}, nil},
		{"split query and body", "/api/v3/order/test", "symbol=BTCUSDT&side=BUY", "type=LIMIT&quantity=1&price=2",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: "1", Price: "2"}, nil},
		{"sor market", "/api/v3/sor/order", "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=2&price=1", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "market", Quantity: "2", Market: true}, nil},
		{"legacy oco, stop market leg", "/api/v3/order/oco", "symbol=BTCUSDT&side=SELL&quantity=1&price=41000&stopPrice=36000", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "oco", Quantity: "1", Price: "41000", TriggerPrice: "36000", Market: true}, nil},
		{"legacy oco, stop limit leg", "/api/v3/order/oco", "symbol=BTCUSDT&side=BUY&quantity=1&price=36000&stopPrice=41000&stopLimitPrice=41500&stopLimitTimeInForce=GTC", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "oco", Quantity: "1", Price: "36000", TriggerPrice: "41000", LegPrices: []string{"41500"}}, nil},
		{"oco list, limit legs", "/api/v3/orderList/oco", "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=41000&belowType=STOP_LOSS_LIMIT&belowPrice=35500&belowStopPrice=36000", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "oco", Quantity: "1", Price: "41000", LegPrices: []string{"35500", "36000"}}, nil},
		{"oco list, stop market leg", "/api/v3/orderList/oco", "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=41000&belowType=STOP_LOSS&belowStopPrice=36000", "",
			&venue.Order{Instrument: "BTCUSDT", Side: "sell", Type: "oco", Quantity: "1", Price: "41000", LegPrices: []string{"36000"}, Market: true}, nil},
		{"oto list", "/api/v3/orderList/oto", "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=1&workingQuantity=1&pendingType=MARKET&pendingSide=BUY&pendingQuantity=100", "", nil, binance.ErrUnreadableOrder},
		{"otoco list", "/api/v3/orderList/otoco", "symbol=BTCUSDT", "", nil, binance.ErrUnreadableOrder},
		{"list with a duplicate", "/api/v3/orderList/oto", "symbol=BTCUSDT&symbol=ETHUSDT", "", nil, venue.ErrDuplicateParam},
		{"not an order", "/api/v3/account", "", "", nil, nil},
		{"no symbol", "/api/v3/order", "side=BUY", "", nil, binance.ErrOrder},
		{"bad query", "/api/v3/order", "symbol=%zz", "", nil, errAny},
		{"json body", "/api/v3/order", "", `{"symbol":"BTCUSDT"}`, nil, binance.ErrBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "POST"
			if tt.path == "/api/v3/account" {
				method = "GET"
			}
			o, err := v.Normalize(&venue.Request{Method: method, Path: tt.path, RawQuery: tt.query, Body: []byte(tt.body)})
			switch {
			case tt.err == nil && err != nil, tt.err != nil && err == nil,
				tt.err != nil && tt.err != errAny && !errors.Is(err, tt.err):
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !reflect.DeepEqual(o, tt.want) {
				t.Fatalf("= %+v, want %+v", o, tt.want)
			}
		})
	}
	if v.ClientOrderIDField() != "newClientOrderId" {
		t.Fatal("ClientOrderIDField")
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

func FuzzParseOrder(f *testing.F) {
	f.Add("BTCUSDT", "BUY", "LIMIT", "1", "2", "", "cid", "symbol=%zz")
	f.Add("", "", "", "", "", "100", "", "&&=")
	f.Fuzz(func(t *testing.T, sym, side, typ, qty, price, quote, cid, raw string) {
		_, _ = binance.ParseOrder(raw, []byte(raw)) // never panics
		_ = binance.StripParams(raw)
		q := url.Values{"symbol": {sym}, "side": {side}, "type": {typ}, "quantity": {qty}, "price": {price}, "quoteOrderQty": {quote}, "newClientOrderId": {cid}}
		o, err := binance.ParseOrder(q.Encode(), nil)
		if err != nil {
			return
		}
		if o.Instrument != sym || o.Side != strings.ToLower(side) || o.Type != strings.ToLower(typ) || o.Quantity != qty ||
			o.Price != price || o.Notional != quote || o.ClientOrderID != cid {
			t.Fatalf("round trip %+v from %v", o, q)
		}
		// Stripping keeps every non-bot parameter's value.
		if got, err := url.ParseQuery(binance.StripParams(q.Encode())); err != nil || got.Encode() != q.Encode() {
			t.Fatalf("StripParams changed %q: %q %v", q.Encode(), got.Encode(), err)
		}
	})
}

func TestRateLimiter(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: creds(nil)})
	t0 := time.Unix(1700000020, 0) // 40 s into a minute, 0 s into a 10 s window
	obs := func(status int, h map[string]string, at time.Time) {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		for k, val := range h {
			r.Header.Set(k, val)
		}
		v.Observe(r, at)
	}
	tests := []struct {
		name   string
		setup  func()
		op     string
		at     time.Time
		ok     bool
		either time.Duration
	}{
		{"fresh", func() {}, venue.OpAccountRead, t0, true, 0},
		{"weight below 95%", func() { obs(200, map[string]string{"X-MBX-USED-WEIGHT-1M": "5699"}, t0) }, venue.OpAccountRead, t0, true, 0},
		{"weight at 95%", func() { obs(200, map[string]string{"X-MBX-USED-WEIGHT-1M": "5700"}, t0) }, venue.OpAccountRead, t0, false, 20 * time.Second},
		{"next minute", func() {}, venue.OpAccountRead, t0.Add(20 * time.Second), true, 0},
		{"orders 10s at 95", func() { obs(200, map[string]string{"X-MBX-USED-WEIGHT-1M": "10", "X-MBX-ORDER-COUNT-10S": "95"}, t0) }, venue.OpOrderPlace, t0.Add(3 * time.Second), false, 7 * time.Second},
		{"orders limit does not stop reads", func() {}, venue.OpOrderRead, t0.Add(3 * time.Second), true, 0},
		{"orders day", func() {
			obs(200, map[string]string{"X-MBX-ORDER-COUNT-10S": "1", "X-MBX-ORDER-COUNT-1D": "199000"}, t0.Add(10*time.Second))
		}, venue.OpOrderPlace, t0.Add(10 * time.Second), false, time.Unix(1700006400, 0).Sub(t0.Add(10 * time.Second))},
		{"429 retry-after", func() { obs(429, map[string]string{"Retry-After": "7"}, t0.Add(time.Hour*24)) }, venue.OpMarketRead, t0.Add(24*time.Hour + 2*time.Second), false, 5 * time.Second},
		{"418 default", func() { obs(418, nil, t0.Add(48*time.Hour)) }, venue.OpMarketRead, t0.Add(48 * time.Hour), false, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			d, ok := v.Allow(tt.op, tt.at)
			if ok != tt.ok || d != tt.either {
				t.Fatalf("Allow = %v, %v; want %v, %v", d, ok, tt.either, tt.ok)
			}
		})
	}
}

func TestNoCanaryInErrors(t *testing.T) {
	const canary = "CANARY-SECRET-7f3a"
	v, _ := binance.New(binance.Options{Credentials: creds(cred{"api_key": "k", "private_key": canary})})
	req, _ := http.NewRequest("GET", "https://api.binance.com/api/v3/account", nil)
	err := v.Authenticate(context.Background(), req, nil)
	if err == nil || strings.Contains(err.Error(), canary) {
		t.Fatalf("err = %v", err)
	}
	if bytes.Contains([]byte(req.URL.String()), []byte(canary)) {
		t.Fatal("canary in url")
	}
}

// TestEd25519Golden: Authenticate reproduces a signature computed once
// with python3's cryptography package (see testdata/ed25519_golden.json).
func TestEd25519Golden(t *testing.T) {
	b, err := os.ReadFile("testdata/ed25519_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		PEM       string `json:"private_key_pem"`
		BotQuery  string `json:"bot_query"`
		Timestamp int64  `json:"timestamp_ms"`
		Payload   string `json:"payload"`
		Param     string `json:"signature_param"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{g.PEM, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"} {
		v, _ := binance.New(binance.Options{Credentials: creds(cred{"api_key": "k", "private_key": key}),
			Now: func() time.Time { return time.UnixMilli(g.Timestamp) }})
		req, _ := http.NewRequest("POST", "https://api.binance.com/api/v3/order?"+g.BotQuery, nil)
		if err := v.Authenticate(context.Background(), req, nil); err != nil {
			t.Fatal(err)
		}
		if want := g.Payload + "&signature=" + g.Param; req.URL.RawQuery != want {
			t.Fatalf("query %s\nwant  %s", req.URL.RawQuery, want)
		}
	}
}
