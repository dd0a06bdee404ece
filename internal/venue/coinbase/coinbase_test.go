package coinbase

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/sign"
	"github.com/keystile/keystile/internal/venue"
)

type cred map[string]secret.Value

func (c cred) Field(n string) (secret.Value, error) {
	if v, ok := c[n]; ok {
		return v, nil
	}
	return secret.Value{}, errors.New("no field " + n)
}

func creds(name, key string) venue.Credentials {
	return func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldKeyName: secret.FromString(name), FieldPrivateKey: secret.FromString(key)})
	}
}

const keyName = "organizations/11111111-2222-3333-4444-555555555555/apiKeys/66666666-7777-8888-9999-000000000000"

func p256PEM(t *testing.T) (string, *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), &k.PublicKey
}

// TestSignatureAcceptedBySandbox has the sandbox's independent JWT verifier
// check Authenticate's JWTs (ES256 and EdDSA), and refuse them for another
// path, method, key or after expiry.
func TestSignatureAcceptedBySandbox(t *testing.T) {
	ecPEM, ecPub := p256PEM(t)
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60") // RFC 8032 test 1
	edPriv := ed25519.NewKeyFromSeed(seed)
	now := time.Unix(1763899200, 0)
	tests := []struct {
		name, key, alg string
		pub            any
	}{
		{"es256", ecPEM, "ES256", ecPub},
		{"eddsa", base64.StdEncoding.EncodeToString(edPriv), "EdDSA", edPriv.Public()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Options{Credentials: creds(keyName, tt.key), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest("GET", "https://api.coinbase.com/api/v3/brokerage/accounts?limit=5", nil)
			r.Header.Set("Authorization", "Bearer bot-leftover")
			if err := v.Authenticate(context.Background(), r, nil); err != nil {
				t.Fatal(err)
			}
			cl, err := sandbox.VerifyCoinbase("GET", "api.coinbase.com", "/api/v3/brokerage/accounts", r.Header, keyName, tt.pub, now)
			if err != nil {
				t.Fatalf("sandbox refuses: %v", err)
			}
			if cl.Alg != tt.alg || cl.Typ != "JWT" || cl.Iss != "cdp" || cl.Exp.Sub(cl.NBF) != Lifetime || len(cl.Nonce) != 32 {
				t.Fatalf("claims %+v", cl)
			}
			for name, check := range map[string]error{
				"other path":   verr(sandbox.VerifyCoinbase("GET", "api.coinbase.com", "/api/v3/brokerage/orders", r.Header, keyName, tt.pub, now)),
				"other method": verr(sandbox.VerifyCoinbase("POST", "api.coinbase.com", "/api/v3/brokerage/accounts", r.Header, keyName, tt.pub, now)),
				"expired":      verr(sandbox.VerifyCoinbase("GET", "api.coinbase.com", "/api/v3/brokerage/accounts", r.Header, keyName, tt.pub, now.Add(Lifetime))),
				"other key":    verr(sandbox.VerifyCoinbase("GET", "api.coinbase.com", "/api/v3/brokerage/accounts", r.Header, keyName+"x", tt.pub, now)),
			} {
				if check == nil {
					t.Errorf("%s accepted", name)
				}
			}
			// A second attempt gets a different nonce.
			first := r.Header.Get("Authorization")
			if err := v.Authenticate(context.Background(), r, nil); err != nil || r.Header.Get("Authorization") == first {
				t.Fatal("JWT reused across attempts")
			}
		})
	}
}

func verr(_ sandbox.CoinbaseClaims, err error) error { return err }

// TestSDKModeEndToEnd: a bot's SDK signs its own JWT with the kst_ token as
// key name and a placeholder key; BotToken finds the token, and the
// re-signed request is accepted by the running emulator, which records the
// order with its client_order_id.
func TestSDKModeEndToEnd(t *testing.T) {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueCoinbase}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info := s.Info().Venues[sandbox.VenueCoinbase]
	v, err := New(Options{Credentials: creds(info.Credentials["key_name"], info.Credentials["private_key"])})
	if err != nil {
		t.Fatal(err)
	}
	placeholder, _ := p256PEM(t)
	const bot = "kst_live_0123456789abcdefSDK"
	send := func(method, path, body string) map[string]any {
		t.Helper()
		r, _ := http.NewRequest(method, info.BaseURL+path, bytes.NewReader([]byte(body)))
		now := time.Now().Unix()
		sdkJWT, err := sign.JWT(sign.JWTES256, secret.FromString(placeholder),
			map[string]any{"kid": bot, "nonce": "abc", "typ": "JWT"},
			map[string]any{"sub": bot, "iss": "cdp", "nbf": now, "exp": now + 120, "uri": method + " api.coinbase.com" + path})
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+sdkJWT)
		if tok, ok := v.BotToken(r.Header, ""); !ok || tok != bot {
			t.Fatalf("BotToken = %q, %v", tok, ok)
		}
		r.Header.Del("Authorization") // the gateway strips CredentialHeaders
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
		if res.StatusCode != 200 || json.Unmarshal(b, &m) != nil {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		return m
	}
	send("GET", "/api/v3/brokerage/accounts", "")
	m := send("POST", "/api/v3/brokerage/orders", `{"client_order_id":"cb-bot-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"30000","post_only":false}}}`)
	id := m["success_response"].(map[string]any)["order_id"].(string)
	send("GET", "/api/v3/brokerage/orders/historical/batch", "")
	send("POST", "/api/v3/brokerage/orders/batch_cancel", `{"order_ids":["`+id+`"]}`)
	if o := s.Orders(sandbox.VenueCoinbase); len(o) != 1 || o[0].ClientOrderID != "cb-bot-1" || o[0].Status != sandbox.OrderCancelled {
		t.Fatalf("orders %+v", o)
	}
	if st := s.Stats(sandbox.VenueCoinbase); st.AuthFailures != 0 {
		t.Fatalf("auth failures %d", st.AuthFailures)
	}
}

func TestBotToken(t *testing.T) {
	v, _ := New(Options{Credentials: creds(keyName, "x")})
	enc := func(h, c string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + base64.RawURLEncoding.EncodeToString([]byte(c)) + ".c2ln"
	}
	tests := []struct{ name, auth, want string }{
		{"sub", "Bearer " + enc(`{"alg":"ES256"}`, `{"sub":"kst_live_a"}`), "kst_live_a"},
		{"kid only", "Bearer " + enc(`{"kid":"kst_test_b"}`, `{"sub":"someone"}`), "kst_test_b"},
		{"real key name", "Bearer " + enc(`{"kid":"organizations/x"}`, `{"sub":"organizations/x"}`), ""},
		{"plain kst bearer is the gateway's", "Bearer kst_live_c", ""},
		{"not a jwt", "Bearer a.b", ""},
		{"bad base64", "Bearer !!.!!.!!", ""},
		{"json array", "Bearer " + enc(`[]`, `[]`), ""},
		{"basic", "Basic Zm9vOmJhcg==", ""},
		{"too long", "Bearer " + enc(`{}`, `{"sub":"kst_`+strings.Repeat("a", maxJWT)+`"}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := v.BotToken(http.Header{"Authorization": {tt.auth}}, "")
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("BotToken = %q, %v", got, ok)
			}
		})
	}
}

func TestAuthenticateErrors(t *testing.T) {
	const canary = "CANARY-coinbase-key-77aa"
	tests := []struct{ name, keyName, key string }{
		{"garbage key", keyName, canary},
		{"empty key name", "", canary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := New(Options{Credentials: creds(tt.keyName, tt.key)})
			r, _ := http.NewRequest("GET", "https://api.coinbase.com/api/v3/brokerage/accounts", nil)
			err := v.Authenticate(context.Background(), r, nil)
			if err == nil || strings.Contains(err.Error(), canary) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without credentials")
	}
}

func TestClassify(t *testing.T) {
	v, _ := New(Options{Credentials: creds(keyName, "x")})
	tests := []struct{ name, method, path, body, want string }{
		{"products", "GET", "/api/v3/brokerage/products", "", venue.OpMarketRead},
		{"product", "GET", "/api/v3/brokerage/products/BTC-USD", "", venue.OpMarketRead},
		{"accounts", "GET", "/api/v3/brokerage/accounts", "", venue.OpAccountRead},
		{"key permissions", "GET", "/api/v3/brokerage/key_permissions", "", venue.OpAccountRead},
		{"orders", "GET", "/api/v3/brokerage/orders/historical/batch", "", venue.OpOrderRead},
		{"place", "POST", "/api/v3/brokerage/orders", "", venue.OpOrderPlace},
		{"cancel", "POST", "/api/v3/brokerage/orders/batch_cancel", "", venue.OpOrderCancel},
		{"send", "POST", "/v2/accounts/abc/transactions", `{"type":"send","to":"bc1q"}`, venue.OpWalletWithdraw},
		{"transfer", "POST", "/v2/accounts/abc/transactions", `{"type":"transfer","to":"def"}`, venue.OpWalletTransfer},
		{"unreadable transaction", "POST", "/v2/accounts/abc/transactions", `{`, venue.OpWalletWithdraw},
		{"withdrawal", "POST", "/v2/accounts/abc/withdrawals", "", venue.OpWalletWithdraw},
		{"move funds", "POST", "/api/v3/brokerage/portfolios/move_funds", "", venue.OpWalletTransfer},
		{"edit unmapped", "POST", "/api/v3/brokerage/orders/edit", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if op, _ := v.Classify(&venue.Request{Method: tt.method, Path: tt.path, Body: []byte(tt.body)}); op != tt.want {
				t.Fatalf("%s %s = %q, want %q", tt.method, tt.path, op, tt.want)
			}
		})
	}
}

// TestNormalize: orders are read as Coinbase executes them — a market
// configuration ignores any price in it, stop-limit and bracket ones carry
// their trigger, both sizes at once are refused.
func TestNormalize(t *testing.T) {
	v, _ := New(Options{Credentials: creds(keyName, "x")})
	tests := []struct {
		name, body string
		want       *venue.Order
	}{
		{"limit gtc", `{"client_order_id":"c1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"30000","post_only":false}}}`,
			&venue.Order{Instrument: "BTC-USD", Side: "buy", Type: "limit", Quantity: "0.01", Price: "30000", ClientOrderID: "c1"}},
		{"market quote", `{"client_order_id":"c2","product_id":"ETH-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"25"}}}`,
			&venue.Order{Instrument: "ETH-USD", Side: "buy", Type: "market", Notional: "25", ClientOrderID: "c2", Market: true}},
		{"market with a price of its own", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"base_size":"10","limit_price":"1"}}}`,
			&venue.Order{Instrument: "BTC-USD", Side: "buy", Type: "market", Quantity: "10", Market: true}},
		{"stop limit numeric", `{"product_id":"BTC-USD","side":"SELL","order_configuration":{"stop_limit_stop_limit_gtc":{"base_size":1,"limit_price":2,"stop_price":"3","stop_direction":"STOP_DIRECTION_STOP_DOWN"}}}`,
			&venue.Order{Instrument: "BTC-USD", Side: "sell", Type: "stop_limit", Quantity: "1", Price: "2", TriggerPrice: "3"}},
		{"bracket", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"trigger_bracket_gtc":{"base_size":"1","limit_price":"30000","stop_trigger_price":"29000"}}}`,
			&venue.Order{Instrument: "BTC-USD", Side: "buy", Type: "bracket", Quantity: "1", Price: "30000", TriggerPrice: "29000"}},
		{"limit by quote", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"quote_size":"100","limit_price":"30000"}}}`,
			&venue.Order{Instrument: "BTC-USD", Side: "buy", Type: "limit", Notional: "100", Price: "30000"}},
		{"both sizes", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"base_size":"1","quote_size":"50"}}}`, nil},
		{"size in another case", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"5","Base_Size":"10"}}}`, nil},
		{"product in another case", `{"Product_Id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"5"}}}`, nil},
		{"two configs", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"1"},"limit_limit_gtc":{"base_size":"1"}}}`, nil},
		{"unknown config", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"magic":{"base_size":"1"}}}`, nil},
		{"no size", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{}}}`, nil},
		{"bad side", `{"product_id":"BTC-USD","side":"HODL","order_configuration":{"market_market_ioc":{"quote_size":"1"}}}`, nil},
		{"bad size type", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":true}}}`, nil},
		{"config not an object", `{"product_id":"BTC-USD","side":"BUY","order_configuration":[1]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := v.Normalize(&venue.Request{Method: "POST", Path: "/api/v3/brokerage/orders", Body: []byte(tt.body)})
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
	if v.ClientOrderIDField() != "client_order_id" {
		t.Fatal("client order id field")
	}
}

func FuzzParseOrder(f *testing.F) {
	f.Add([]byte(`{"client_order_id":"c1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"30000"}}}`))
	f.Add([]byte(`{"product_id":"X","side":"sell","order_configuration":{"market_market_ioc":{"quote_size":1e2}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ParseOrder(body)
		if err != nil {
			return
		}
		if o.Side != "buy" && o.Side != "sell" || o.Instrument == "" || (o.Quantity == "" && o.Notional == "") {
			t.Fatalf("accepted incomplete order %+v", o)
		}
	})
}

func TestRateLimiter(t *testing.T) {
	v, _ := New(Options{Credentials: creds(keyName, "x")})
	t0 := time.Unix(1700000000, 0)
	count := func(op string, at time.Time) int {
		n := 0
		for i := 0; i < 50; i++ {
			if _, ok := v.Allow(op, at); ok {
				n++
			}
		}
		return n
	}
	if n := count(venue.OpOrderPlace, t0); n != 29 {
		t.Fatalf("private: %d allowed, want 29", n)
	}
	if n := count(venue.OpMarketRead, t0); n != 10 {
		t.Fatalf("public: %d allowed, want 10", n)
	}
	if wait, ok := v.Allow(venue.OpAccountRead, t0.Add(300*time.Millisecond)); ok || wait != 700*time.Millisecond {
		t.Fatalf("Allow = %v, %v", wait, ok)
	}
	t1 := t0.Add(time.Second)
	v.Observe(&http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"2"}}}, t1)
	if wait, ok := v.Allow(venue.OpMarketRead, t1); ok || wait != 2*time.Second {
		t.Fatalf("after 429: %v, %v", wait, ok)
	}
	if _, ok := v.Allow(venue.OpMarketRead, t1.Add(2*time.Second)); !ok {
		t.Fatal("blocked after back-off")
	}
}

func Example() {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	v, err := New(Options{Credentials: creds("organizations/o/apiKeys/k", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))})
	if err != nil {
		panic(err)
	}
	r, _ := http.NewRequest("GET", "https://api.coinbase.com/api/v3/brokerage/accounts", nil)
	if err := v.Authenticate(context.Background(), r, nil); err != nil {
		panic(err)
	}
	h, c, _ := DecodeJWT(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	fmt.Println(h["alg"], h["kid"], c["iss"], c["uri"])
	// Output: ES256 organizations/o/apiKeys/k cdp GET api.coinbase.com/api/v3/brokerage/accounts
}
