package venue

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestFormParams(t *testing.T) {
	owned := func(k string) bool { return k == "timestamp" }
	for _, tc := range []struct {
		name, query, body string
		dup               bool
		want              url.Values
	}{
		{name: "query only", query: "symbol=BTCUSDT&side=BUY", want: url.Values{"symbol": {"BTCUSDT"}, "side": {"BUY"}}},
		{name: "split", query: "symbol=BTCUSDT", body: "side=BUY", want: url.Values{"symbol": {"BTCUSDT"}, "side": {"BUY"}}},
		{name: "owned twice", query: "timestamp=1&a=1", body: "timestamp=2", want: url.Values{"a": {"1"}}},
		{name: "twice in query", query: "symbol=A&symbol=B", dup: true},
		{name: "twice in body", body: "quantity=1&quantity=2", dup: true},
		{name: "query and body", query: "price=1", body: "price=1", dup: true},
		{name: "letter case", query: "price=1&PRICE=2", dup: true},
		{name: "letter case across", query: "Price=1", body: "price=2", dup: true},
		{name: "encoded key", query: "side=BUY&%73ide=SELL", dup: true},
		{name: "empty second", query: "side=BUY&side", dup: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FormParams(tc.query, []byte(tc.body), owned)
			if tc.dup {
				if !errors.Is(err, ErrDuplicateParam) {
					t.Fatalf("err %v, want ErrDuplicateParam", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got.Get(k) != v[0] {
					t.Fatalf("%s = %q, want %q", k, got.Get(k), v[0])
				}
			}
		})
	}
	if _, err := FormParams("a=%zz", nil, nil); err == nil || errors.Is(err, ErrDuplicateParam) {
		t.Fatalf("malformed query: %v", err)
	}
}

func TestCheckJSONKeys(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		dup        bool
	}{
		{"flat", `{"side":"buy","qty":"1"}`, false},
		{"same key in sibling objects", `{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}`, false},
		{"not JSON", `side=buy&side=sell`, false},
		{"flat twice", `{"side":"buy","side":"sell"}`, true},
		{"escaped twice", `{"side":"buy","\u0073ide":"sell"}`, true},
		{"case twice", `{"sz":"1","SZ":"100"}`, true},
		{"nested twice", `{"order_configuration":{"limit_limit_gtc":{"base_size":"1","base_size":"9"}}}`, true},
		{"in array", `[{"a":1},{"b":1,"b":2}]`, true},
		{"invalid UTF-8 keys", "{\"k\xff\":1,\"k\xfe\":2}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckJSONKeys([]byte(tc.body))
			if tc.dup != errors.Is(err, ErrDuplicateParam) {
				t.Fatalf("CheckJSONKeys(%s) = %v, duplicate %v", tc.body, err, tc.dup)
			}
		})
	}
	deep := strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2)
	if err := CheckJSONKeys([]byte(deep)); err == nil {
		t.Fatal("no error for a document nested beyond the limit")
	}
	if _, err := JSONFields([]byte(`{"px":"1","px":"2"}`), "px"); !errors.Is(err, ErrDuplicateParam) {
		t.Fatalf("JSONFields with a duplicate key: %v", err)
	}
}

// FuzzFormParamsUnique: no panic; a success holds no key twice (in any case),
// and every value it returns is one the input holds.
func FuzzFormParamsUnique(f *testing.F) {
	f.Add("symbol=BTCUSDT&side=BUY", "quantity=1")
	f.Add("a=1&A=2", "")
	f.Add("%73ymbol=x", "symbol=y")
	f.Add("timestamp=1", "timestamp=2&b=%zz")
	f.Fuzz(func(t *testing.T, query, body string) {
		got, err := FormParams(query, []byte(body), func(k string) bool { return k == "timestamp" })
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for k, vs := range got {
			if len(vs) != 1 || seen[strings.ToLower(k)] || k == "timestamp" {
				t.Fatalf("result %v", got)
			}
			seen[strings.ToLower(k)] = true
		}
	})
}

// FuzzCheckJSONKeys: no panic; a document it accepts decodes into a map
// at the top level with as many keys as it has members.
func FuzzCheckJSONKeys(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"a":2}}`))
	f.Add([]byte(`{"a":1,"\u0041":2}`))
	f.Add([]byte(`[[[{"x":[1,2,{"y":null}]}]]]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if CheckJSONKeys(body) != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			return
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return
		}
		n := 0
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return
			}
			n++
		}
		if n != len(m) {
			t.Fatalf("accepted %q: %d members but %d distinct keys", body, n, len(m))
		}
	})
}

func TestFieldsInAnotherCase(t *testing.T) {
	if _, err := FormFields("symbol=BTCUSDT&Price=1", nil, nil, "symbol", "price"); !errors.Is(err, ErrDuplicateParam) {
		t.Fatalf("FormFields with Price for price: %v", err)
	}
	if f, err := FormFields("symbol=BTCUSDT&Other=1", []byte("price=2"), nil, "symbol", "price"); err != nil || f[0] != "BTCUSDT" || f[1] != "2" {
		t.Fatalf("FormFields = %q, %v", f, err)
	}
	if _, err := JSONFields([]byte(`{"instId":"BTC-USDT","PX":"1"}`), "instId", "px"); !errors.Is(err, ErrDuplicateParam) {
		t.Fatalf("JSONFields with PX for px: %v", err)
	}
}
