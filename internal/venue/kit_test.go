package venue_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
)

func TestTableAuth(t *testing.T) {
	tab := venue.Table{
		{Method: "GET", Path: "/market/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
		{Method: "GET", Path: "/trades/history", Op: venue.OpMarketRead, Auth: venue.AuthKey},
		{Method: "GET", Path: "/account", Op: venue.OpAccountRead},
	}
	tests := []struct {
		name, method, path string
		public, keyOnly    bool
	}{
		{"public", "GET", "/market/ticker", true, false},
		{"key only", "GET", "/trades/history/", false, true},
		{"signed by default", "GET", "/account", false, false},
		{"other method", "POST", "/market/ticker", false, false},
		{"unmapped", "GET", "/nowhere", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tab.Public(tt.method, tt.path); got != tt.public {
				t.Errorf("Public = %v", got)
			}
			if got := tab.KeyOnly(tt.method, tt.path); got != tt.keyOnly {
				t.Errorf("KeyOnly = %v", got)
			}
		})
	}
}

func TestClientIDSet(t *testing.T) {
	tests := []struct {
		name         string
		id           venue.ClientID
		query, body  string
		wantQ, wantB string
		wantErr      bool
	}{
		{"query first: replaced in the query, body copies dropped", venue.ClientID{Field: "c", Place: venue.InFormQueryFirst},
			"a=1&c=x", "c=y&b=2", "a=1&c=ID", "b=2", false},
		{"query first: in the body", venue.ClientID{Field: "c", Place: venue.InFormQueryFirst}, "a=1", "c=y&b=2", "a=1", "c=ID&b=2", false},
		{"query first: new, body", venue.ClientID{Field: "c", Place: venue.InFormQueryFirst}, "a=1", "b=2", "a=1", "b=2&c=ID", false},
		{"query first: new, no body", venue.ClientID{Field: "c", Place: venue.InFormQueryFirst}, "a=1", "", "a=1&c=ID", "", false},
		{"body first: body wins, query copies dropped", venue.ClientID{Field: "c", Place: venue.InFormBodyFirst}, "c=x", "c=y", "", "c=ID", false},
		{"body first: query kept without a body", venue.ClientID{Field: "c", Place: venue.InFormBodyFirst}, "c=x&a=1", "", "c=ID&a=1", "", false},
		{"body first: query moved into a body", venue.ClientID{Field: "c", Place: venue.InFormBodyFirst}, "c=x", "b=2", "", "b=2&c=ID", false},
		{"body first: new goes in the body", venue.ClientID{Field: "c", Place: venue.InFormBodyFirst}, "", "", "", "c=ID", false},
		{"escaped name", venue.ClientID{Field: "c_d", Place: venue.InFormBodyFirst}, "", "c%5Fd=x", "", "c_d=ID", false},
		{"json", venue.ClientID{Field: "cid", Place: venue.InJSON}, "", `{"cid":"x","a":1}`, "", `{"cid":"ID","a":1}`, false},
		{"json added", venue.ClientID{Field: "cid", Place: venue.InJSON}, "", `{"a":1}`, "", `{"a":1,"cid":"ID"}`, false},
		{"json: the name in another case", venue.ClientID{Field: "cid", Place: venue.InJSON}, "", `{"Cid":"x","a":1}`, "", "", true},
		{"json: twice", venue.ClientID{Field: "cid", Place: venue.InJSON}, "", `{"cid":"x","cid":"y"}`, "", "", true},
		{"json: not an object", venue.ClientID{Field: "cid", Place: venue.InJSON}, "", `[1]`, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &venue.Request{RawQuery: tt.query, Body: []byte(tt.body)}
			err := tt.id.Set(r, "ID")
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error: %q %q", r.RawQuery, r.Body)
				}
				return
			}
			if err != nil || r.RawQuery != tt.wantQ || string(r.Body) != tt.wantB {
				t.Fatalf("got %q %q, %v; want %q %q", r.RawQuery, r.Body, err, tt.wantQ, tt.wantB)
			}
		})
	}
	hex, uuid := venue.ClientID{}, venue.ClientID{UUID: true}
	if id := hex.New([16]byte{1}); len(id) != 32 || strings.Contains(id, "-") {
		t.Errorf("hex id %q", id)
	}
	if id := uuid.New([16]byte{1}); len(id) != 36 || id[14] != '4' {
		t.Errorf("uuid %q", id)
	}
}

func TestTickerParse(t *testing.T) {
	okx := venue.Ticker{Venue: "okx", Path: "/t", Param: "instId", Status: []any{"code"}, StatusOK: "0", Entries: []any{"data"},
		Symbol: "instId", Price: []any{"last"}}
	kraken := venue.Ticker{Venue: "kraken", Path: "/t", Param: "pair", Errors: []any{"error"}, Entries: []any{"result"}, Keyed: true,
		Price: []any{"c", 0}}
	plain := venue.Ticker{Venue: "binance", Path: "/t", Param: "symbol", Symbol: "symbol", Price: []any{"price"}, Numbers: true}
	tests := []struct {
		name  string
		t     venue.Ticker
		inst  string
		body  string
		want  string
		error string
	}{
		{"list", okx, "BTC-USDT", `{"code":"0","data":[{"instId":"BTC-USDT","last":"43250.1"}]}`, "43250.1", ""},
		{"numeric status", okx, "BTC-USDT", `{"code":0,"data":[{"last":"43250.1"}]}`, "43250.1", ""},
		{"a numeric price is refused", okx, "BTC-USDT", `{"code":"0","data":[{"last":43250.1}]}`, "", "no price"},
		{"bad status", okx, "BTC-USDT", `{"code":"50011","data":[]}`, "", "status"},
		{"two entries", okx, "BTC-USDT", `{"code":"0","data":[{"last":"1"},{"last":"2"}]}`, "", "2 entries"},
		{"other symbol", okx, "BTC-USDT", `{"code":"0","data":[{"instId":"ETH-USDT","last":"1"}]}`, "", "answer is for"},
		{"keyed, one entry under another name", kraken, "XBTUSD", `{"error":[],"result":{"XXBTZUSD":{"c":["37500.0","0.1"]}}}`, "37500.0", ""},
		{"keyed, several", kraken, "XBTUSD", `{"error":[],"result":{"A":{"c":["1"]},"XBTUSD":{"c":["2"]}}}`, "2", ""},
		{"keyed, several, none named", kraken, "XBTUSD", `{"error":[],"result":{"A":{"c":["1"]},"B":{"c":["2"]}}}`, "", "none named"},
		{"error list", kraken, "XBTUSD", `{"error":["EQuery:Unknown asset pair"],"result":{}}`, "", "EQuery"},
		{"the answer is the entry", plain, "btcusdt", `{"symbol":"BTCUSDT","price":"37500.00"}`, "37500.00", ""},
		{"numbers kept exactly", plain, "BTCUSDT", `{"price":37500.10000000001}`, "37500.10000000001", ""},
		{"no price", plain, "BTCUSDT", `{"symbol":"BTCUSDT"}`, "", "no price"},
		{"price of another type", plain, "BTCUSDT", `{"price":{"x":1}}`, "", "no price"},
		{"not JSON", plain, "BTCUSDT", `nope`, "", "not a single JSON object"},
		{"trailing data", plain, "BTCUSDT", `{"price":"1"} {}`, "", "not a single JSON object"},
		{"invalid UTF-8", plain, "BTCUSDT", "{\"price\":\"1\xe2\"}", "", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.t.Parse(tt.inst, []byte(tt.body))
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) || !strings.HasPrefix(err.Error(), tt.t.Venue+": ticker: ") {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tt.error)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	m, p, q := venue.Ticker{Path: "/v5/market/tickers", Query: "category=spot&", Param: "symbol"}.Request("btc usdt")
	if m != "GET" || p != "/v5/market/tickers" || q != "category=spot&symbol=BTC+USDT" {
		t.Fatalf("request %s %s %s", m, p, q)
	}
	if _, p, q := (venue.Ticker{Path: "/market/products/", InPath: true}).Request("btc-usd/../x"); p != "/market/products/BTC-USD%2F..%2FX" || q != "" {
		t.Fatalf("path request %s %s", p, q)
	}
}

// FuzzTickerParse: Parse never panics, and a price it returns is text
// that stands in the answer as written (unless the answer escapes it).
func FuzzTickerParse(f *testing.F) {
	for _, s := range []string{`{"code":"0","data":[{"instId":"X","last":"1.5"}]}`, `{"error":[],"result":{"P":{"c":["2",1]}}}`,
		`{"price":3e2}`, `[]`, `{"data":[[]]}`, `{"result":{"a":null}}`} {
		f.Add(s, "X")
	}
	tickers := []venue.Ticker{
		{Venue: "a", Status: []any{"code"}, StatusOK: "0", Entries: []any{"data"}, Symbol: "instId", Price: []any{"last"}},
		{Venue: "b", Errors: []any{"error"}, Entries: []any{"result"}, Keyed: true, Price: []any{"c", 0}},
		{Venue: "c", Symbol: "symbol", Price: []any{"price"}},
	}
	f.Fuzz(func(t *testing.T, body, inst string) {
		for _, tk := range tickers {
			p, err := tk.Parse(inst, []byte(body))
			if err == nil && (p == "" || !strings.Contains(body, p) && !strings.Contains(body, `\`)) {
				t.Fatalf("%s: price %q not in %q", tk.Venue, p, body)
			}
		}
	})
}

func TestWindowLimiter(t *testing.T) {
	l := &venue.WindowLimiter{Window: time.Second, Limit: func(c string) int {
		if c == "small" {
			return 20
		}
		return 100
	}, Backoff: 2 * time.Second, MaxBackoff: time.Minute}
	t0 := time.Unix(1000, 0)
	for i := 0; i < 19; i++ { // 20 less 5%
		if _, ok := l.Allow("small", t0); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	if wait, ok := l.Allow("small", t0.Add(100*time.Millisecond)); ok || wait != 900*time.Millisecond {
		t.Fatalf("over the limit: %v %v", wait, ok)
	}
	if _, ok := l.Allow("big", t0); !ok {
		t.Fatal("another class was limited")
	}
	if _, ok := l.Allow("small", t0.Add(time.Second)); !ok {
		t.Fatal("the next window was limited")
	}
	for _, c := range []struct {
		retryAfter string
		want       time.Duration
	}{{"", 2 * time.Second}, {"5", 5 * time.Second}, {"junk", 2 * time.Second}, {"-3", 2 * time.Second}, {"99999", time.Minute}} {
		l := &venue.WindowLimiter{Window: time.Second, Limit: func(string) int { return 100 }, Backoff: 2 * time.Second, MaxBackoff: time.Minute}
		l.Observe(&http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {c.retryAfter}}}, t0)
		if wait, ok := l.Allow("x", t0); ok || wait != c.want {
			t.Errorf("Retry-After %q: %v %v, want %v", c.retryAfter, wait, ok, c.want)
		}
	}
	l.Observe(&http.Response{StatusCode: http.StatusOK}, t0)
	l.Observe(nil, t0)
}

// credential is a map-backed venue.Credential.
type credential map[string]string

func (c credential) Field(name string) (secret.Value, error) {
	v, ok := c[name]
	if !ok {
		return secret.Value{}, errors.New("no such field")
	}
	return secret.FromString(v), nil
}

func TestCredentialFields(t *testing.T) {
	c := credential{"api_key": "k", "secret": "s", "empty": ""}
	f, err := venue.CredentialFields(c, "api_key", "secret")
	if err != nil || string(f[0].Reveal()) != "k" || string(f[1].Reveal()) != "s" {
		t.Fatalf("%v %v", f, err)
	}
	for _, missing := range []string{"passphrase", "empty"} {
		_, err := venue.CredentialFields(c, "api_key", missing)
		if !errors.Is(err, venue.ErrCredentialField) || !strings.HasSuffix(err.Error(), ": "+missing) {
			t.Errorf("%s: %v", missing, err)
		}
	}
}

// ExampleTicker: a venue's reference price, described as a table.
func ExampleTicker() {
	t := venue.Ticker{Venue: "okx", Path: "/api/v5/market/ticker", Param: "instId", Status: []any{"code"}, StatusOK: "0",
		Entries: []any{"data"}, Symbol: "instId", Price: []any{"last"}}
	method, path, query := t.Request("btc-usdt")
	price, err := t.Parse("BTC-USDT", []byte(`{"code":"0","data":[{"instId":"BTC-USDT","last":"43250.1"}]}`))
	fmt.Println(method, path+"?"+query, price, err)
	// Output: GET /api/v5/market/ticker?instId=BTC-USDT 43250.1 <nil>
}

// ExampleClientID: keystile's client order id in a form order, where the
// venue reads it.
func ExampleClientID() {
	id := venue.ClientID{Field: "newClientOrderId", Place: venue.InFormQueryFirst}
	r := &venue.Request{RawQuery: "symbol=BTCUSDT&newClientOrderId=bot-1", Body: []byte("newClientOrderId=bot-2")}
	_ = id.Set(r, id.New([16]byte{1}))
	fmt.Printf("%s | %q\n", r.RawQuery, r.Body)
	// Output: symbol=BTCUSDT&newClientOrderId=01000000000000000000000000000000 | ""
}
