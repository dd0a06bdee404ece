package betfair

import (
	"testing"

	"github.com/keystile/keystile/internal/venue"
)

func TestClassify(t *testing.T) {
	v := &Venue{}
	tests := []struct {
		name, method, path, body string
		want                     string
		ok                       bool
	}{
		{"rest place", "POST", "/exchange/betting/rest/v1.0/placeOrders/", "{}", venue.OpOrderPlace, true},
		{"rest funds", "POST", "/exchange/account/rest/v1.0/getAccountFunds/", "{}", venue.OpAccountRead, true},
		{"rest market", "POST", "/exchange/betting/rest/v1.0/listMarketBook", "{}", venue.OpMarketRead, true},
		{"rest transfer", "POST", "/exchange/account/rest/v1.0/transferFunds/", "{}", venue.OpWalletTransfer, true},
		{"rest unknown", "POST", "/exchange/betting/rest/v1.0/doSomething/", "{}", "", false},
		{"rest GET", "GET", "/exchange/betting/rest/v1.0/placeOrders/", "", "", false},
		{"identity not proxied", "POST", "/api/login", "", "", false},
		{"rpc one", "POST", "/exchange/betting/json-rpc/v1", `{"jsonrpc":"2.0","method":"SportsAPING/v1.0/listMarketCatalogue","params":{},"id":1}`, venue.OpMarketRead, true},
		{"rpc batch most sensitive", "POST", "/exchange/betting/json-rpc/v1", `[{"method":"SportsAPING/v1.0/listMarketBook"},{"method":"SportsAPING/v1.0/placeOrders"},{"method":"SportsAPING/v1.0/cancelOrders"}]`, venue.OpOrderPlace, true},
		{"rpc batch with unknown", "POST", "/exchange/betting/json-rpc/v1", `[{"method":"SportsAPING/v1.0/listMarketBook"},{"method":"SportsAPING/v1.0/nope"}]`, "", false},
		{"rpc account", "POST", "/exchange/account/json-rpc/v1", `{"method":"AccountAPING/v1.0/getAccountFunds"}`, venue.OpAccountRead, true},
		{"rpc wrong namespace", "POST", "/exchange/betting/json-rpc/v1", `{"method":"Other/placeOrders"}`, "", false},
		{"rpc empty batch", "POST", "/exchange/betting/json-rpc/v1", `[]`, "", false},
		{"rpc garbage", "POST", "/exchange/betting/json-rpc/v1", `{`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, ok := v.Classify(&venue.Request{Method: tt.method, Path: tt.path, Body: []byte(tt.body)})
			if op != tt.want || ok != tt.ok {
				t.Fatalf("Classify = %q, %v; want %q, %v", op, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzClassifyRPC(f *testing.F) {
	for _, s := range []string{`{"method":"SportsAPING/v1.0/placeOrders"}`, `[{"method":"x"}]`, `[]`, `{`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		op, ok := classifyRPC(b)
		if ok != (op != "") {
			t.Fatalf("ok=%v op=%q", ok, op)
		}
	})
}
