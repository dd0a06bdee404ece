package sandbox

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Binance spot API docs (binance-spot-api-docs, rest-api.md, SIGNED
// endpoint examples), as copied in /work/shared/vectors/vectors.json
// "binance_hmac_sha256".
const (
	binanceVecKey    = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
	binanceVecSecret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
	binanceVecTime   = 1499827319559
)

var binanceVectors = []struct{ name, query, body, sig string }{
	{"query only", "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559", "",
		"c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"},
	{"non-ASCII, percent-encoded", "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559", "",
		"e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"},
	{"query plus body", "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC", "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
		"0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"},
}

func TestVerifyBinanceVectors(t *testing.T) {
	key := BinanceKey{APIKey: binanceVecKey, Secret: []byte(binanceVecSecret)}
	h := http.Header{"X-Mbx-Apikey": {binanceVecKey}}
	now := time.UnixMilli(binanceVecTime + 100)
	for _, v := range binanceVectors {
		t.Run(v.name, func(t *testing.T) {
			// Signature last in the query (how SDKs send it) and, for a
			// body, also as the body's last field.
			if err := VerifyBinance(v.query+"&signature="+v.sig, []byte(v.body), h, key, now); err != nil {
				t.Fatalf("signature in query refused: %v", err)
			}
			if v.body != "" {
				if err := VerifyBinance(v.query, []byte(v.body+"&signature="+v.sig), h, key, now); err != nil {
					t.Fatalf("signature in body refused: %v", err)
				}
			}
			bad := strings.Replace(v.sig, v.sig[:2], "00", 1)
			if err := VerifyBinance(v.query+"&signature="+bad, []byte(v.body), h, key, now); !errors.Is(err, ErrBinanceSignature) {
				t.Fatalf("bad signature: %v", err)
			}
			if err := VerifyBinance(v.query+"&signature="+v.sig, []byte(v.body), h, key, now.Add(5*time.Second)); !errors.Is(err, ErrBinanceTimestamp) {
				t.Fatalf("stale timestamp: %v", err)
			}
			if err := VerifyBinance(v.query+"&signature="+v.sig, []byte(v.body), h, key, now.Add(-1100*time.Millisecond)); !errors.Is(err, ErrBinanceTimestamp) {
				t.Fatalf("future timestamp: %v", err)
			}
		})
	}
}

func TestVerifyBinanceKeys(t *testing.T) {
	key := BinanceKey{APIKey: binanceVecKey, Secret: []byte(binanceVecSecret)}
	v := binanceVectors[0]
	now := time.UnixMilli(binanceVecTime)
	tests := []struct {
		name, apiKey string
		want         error
		code         int
	}{
		{"missing", "", ErrBinanceKeyFormat, -2014},
		{"kst token", "kst_test_" + strings.Repeat("a", 38), ErrBinanceKeyFormat, -2014},
		{"unknown", strings.Repeat("A", 64), ErrBinanceKey, -2015},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyBinance(v.query+"&signature="+v.sig, nil, http.Header{"X-Mbx-Apikey": {tt.apiKey}}, key, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if _, code, _ := BinanceErrorCode(err); code != tt.code {
				t.Fatalf("code %d, want %d", code, tt.code)
			}
		})
	}
}

// binanceSigned returns query + timestamp + signature, signed the way
// the Binance docs describe (written for the test, not by the venue).
func binanceSigned(secret, query string, body string, now time.Time) string {
	if query != "" {
		query += "&"
	}
	query += "timestamp=" + strconv.FormatInt(now.UnixMilli(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(query + body))
	return query + "&signature=" + hex.EncodeToString(m.Sum(nil))
}

func TestBinanceEndToEnd(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueBinance}, Clock: clk.Now})
	vi := s.Info().Venues[VenueBinance]
	key, sec := vi.Credentials["api_key"], vi.Credentials["secret"]
	if len(key) != 64 || len(sec) != 64 {
		t.Fatalf("credential formats: %q", vi.Credentials)
	}
	h := map[string]string{"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"}
	get := func(method, path, q, body string) resp {
		return do(t, nil, method, vi.BaseURL+path+"?"+binanceSigned(sec, q, body, clk.Now()), []byte(body), h)
	}
	r := do(t, nil, "GET", vi.BaseURL+"/api/v3/time", nil, nil)
	if r.status != 200 || int64(r.json(t)["serverTime"].(float64)) != clk.Now().UnixMilli() {
		t.Fatalf("time: %d %s", r.status, r.body)
	}
	r = get("GET", "/api/v3/account", "", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"USDT"`) || r.header.Get("X-MBX-USED-WEIGHT-1M") == "" {
		t.Fatalf("account: %d %s %v", r.status, r.body, r.header)
	}
	r = get("POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC", "quantity=0.5&price=37000&newClientOrderId=cid-1")
	o := r.json(t)
	if r.status != 200 || o["clientOrderId"] != "cid-1" || r.header.Get("X-MBX-ORDER-COUNT-10S") != "1" || r.header.Get("X-MBX-ORDER-COUNT-1D") != "1" {
		t.Fatalf("order: %d %s %v", r.status, r.body, r.header)
	}
	r = get("GET", "/api/v3/openOrders", "", "")
	if !strings.Contains(string(r.body), "cid-1") {
		t.Fatalf("open orders: %s", r.body)
	}
	r = get("DELETE", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=cid-1", "")
	if r.status != 200 || r.json(t)["status"] != "CANCELED" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	get("POST", "/api/v3/order", "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=1", "")
	r = get("DELETE", "/api/v3/openOrders", "symbol=BTCUSDT", "")
	if r.status != 200 || strings.Count(string(r.body), "CANCELED") != 1 {
		t.Fatalf("cancel all: %d %s", r.status, r.body)
	}
	orders := s.Orders(VenueBinance)
	if len(orders) != 2 || orders[0].ClientOrderID != "cid-1" || orders[1].Status != OrderCancelled {
		t.Fatalf("orders: %+v", orders)
	}

	// Error shapes.
	wantErr := func(name string, r resp, status, code int) {
		t.Helper()
		if r.status != status || r.json(t)["code"] != float64(code) {
			t.Errorf("%s: %d %s, want %d code %d", name, r.status, r.body, status, code)
		}
	}
	q := binanceSigned(sec, "symbol=BTCUSDT", "", clk.Now())
	flipped := "0"
	if q[len(q)-1] == '0' {
		flipped = "1" // the signature must really change
	}
	wantErr("bad signature", do(t, nil, "GET", vi.BaseURL+"/api/v3/openOrders?"+q[:len(q)-1]+flipped, nil, h), 400, -1022)
	wantErr("old timestamp", do(t, nil, "GET", vi.BaseURL+"/api/v3/openOrders?"+binanceSigned(sec, "", "", clk.Now().Add(-6*time.Second)), nil, h), 400, -1021)
	wantErr("kst token as key", do(t, nil, "GET", vi.BaseURL+"/api/v3/openOrders?"+q, nil, map[string]string{"X-MBX-APIKEY": "kst_test_" + canaryToken}), 401, -2014)
	r = do(t, nil, "GET", vi.BaseURL+"/api/v3/openOrders?"+q, nil, map[string]string{"X-MBX-APIKEY": "kst_test_" + canaryToken})
	if strings.Contains(string(r.body), canaryToken) || strings.Contains(r.header.Get("X-Sandbox-Echo-X-MBX-APIKEY"), canaryToken) {
		t.Fatal("canary echoed")
	}
	if st := s.Stats(VenueBinance); st.AuthFailures != 4 || st.Orders != 2 || st.Cancels != 2 {
		t.Fatalf("stats: %+v", st)
	}

	// Weight: 6000 per minute, then 429 and 418 with Retry-After.
	clk.Advance(time.Minute)
	for range 300 {
		if r := get("GET", "/api/v3/account", "", ""); r.status != 200 {
			t.Fatalf("account under the limit: %d %s", r.status, r.body)
		}
	}
	r = get("GET", "/api/v3/account", "", "")
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.json(t)["code"] != float64(-1003) {
		t.Fatalf("over the limit: %d %s %v", r.status, r.body, r.header)
	}
	r = do(t, nil, "GET", vi.BaseURL+"/api/v3/ping", nil, nil)
	if r.status != 418 || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 429: %d %s", r.status, r.body)
	}
	clk.Advance(time.Minute)
	if r := do(t, nil, "GET", vi.BaseURL+"/api/v3/ping", nil, nil); r.status != 200 || r.header.Get("X-MBX-USED-WEIGHT-1M") != "1" {
		t.Fatalf("next minute: %d %v", r.status, r.header)
	}
}

func TestBinanceEd25519(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	s := startSandbox(t, Options{Venues: []string{VenueBinance}, Credentials: map[string]map[string]string{
		VenueBinance: {"api_key": binanceVecKey, "private_key": pemKey}}})
	vi := s.Info().Venues[VenueBinance]
	if vi.Credentials["private_key"] != pemKey || vi.Credentials["secret"] != "" {
		t.Fatalf("credentials: %v", vi.Credentials)
	}
	q := "symbol=BTCUSDT&timestamp=" + strconv.FormatInt(time.Now().UnixMilli(), 10)
	sig := url.QueryEscape(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(q))))
	r := do(t, nil, "GET", vi.BaseURL+"/api/v3/openOrders?"+q+"&signature="+sig, nil, map[string]string{"X-MBX-APIKEY": binanceVecKey})
	if r.status != 200 {
		t.Fatalf("ed25519: %d %s", r.status, r.body)
	}
	r = do(t, nil, "GET", vi.BaseURL+"/api/v3/openOrders?"+q+"&x=1&signature="+sig, nil, map[string]string{"X-MBX-APIKEY": binanceVecKey})
	if r.status != 400 || r.json(t)["code"] != float64(-1022) {
		t.Fatalf("changed query: %d %s", r.status, r.body)
	}
	if _, err := Start(t.Context(), Options{Venues: []string{VenueBinance}, Credentials: map[string]map[string]string{
		VenueBinance: {"private_key": "not pem"}}}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bad pem: %v", err)
	}
}

func FuzzVerifyBinance(f *testing.F) {
	for _, v := range binanceVectors {
		f.Add(v.query+"&signature="+v.sig, v.body)
	}
	f.Add("signature=&signature=%zz", "&&=")
	key := BinanceKey{APIKey: binanceVecKey, Secret: []byte(binanceVecSecret)}
	h := http.Header{"X-Mbx-Apikey": {binanceVecKey}}
	f.Fuzz(func(t *testing.T, q, body string) {
		_ = VerifyBinance(q, []byte(body), h, key, time.UnixMilli(binanceVecTime))
	})
}
