package venue

import "testing"

func TestTableLookup(t *testing.T) {
	tab := Table{
		{Method: "GET", Path: "/account/v1/balance", Op: OpAccountRead},
		{Method: "POST", Path: "/marketplace-api/v1/user-targets/create", Op: OpOrderPlace},
		{Method: "DELETE", Path: "/api/v1/orders/{id}", Op: OpOrderCancel},
		{Method: "GET", Path: "/exchange/*", Op: OpMarketRead},
		{Method: "*", Path: "/graphql", Op: "graphql"},
	}
	tests := []struct {
		method, path string
		want         string
		ok           bool
	}{
		{"GET", "/account/v1/balance", OpAccountRead, true},
		{"GET", "/account/v1/balance/", OpAccountRead, true},
		{"POST", "/account/v1/balance", "", false},
		{"POST", "/marketplace-api/v1/user-targets/create", OpOrderPlace, true},
		{"DELETE", "/api/v1/orders/42", OpOrderCancel, true},
		{"DELETE", "/api/v1/orders", "", false},
		{"DELETE", "/api/v1/orders/42/x", "", false},
		{"GET", "/exchange/v1/market/items", OpMarketRead, true},
		{"GET", "/exchange", OpMarketRead, true},
		{"GET", "/exchangex/v1", "", false},
		{"PUT", "/graphql", "graphql", true},
		{"GET", "/", "", false},
		{"GET", "", "", false},
		{"GET", "/account/v1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got, ok := tab.Lookup(tt.method, tt.path)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("Lookup = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzTableLookup(f *testing.F) {
	tab := Table{{Method: "GET", Path: "/a/{x}/c", Op: "x"}, {Method: "GET", Path: "/b/*", Op: "y"}, {Method: "*", Path: "/", Op: "root"}}
	for _, s := range []string{"/a/1/c", "/b/", "//", "/a//c", "", "/b/x/y/z"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		op, ok := tab.Lookup(method, path)
		if ok != (op != "") {
			t.Fatalf("ok=%v with op %q", ok, op)
		}
	})
}

func TestJSONFields(t *testing.T) {
	got, err := JSONFields([]byte(`{"a":"x","b":0.10000000000000000001,"c":null,"e":7}`), "a", "b", "c", "d", "e")
	if err != nil || got[0] != "x" || got[1] != "0.10000000000000000001" || got[2] != "" || got[3] != "" || got[4] != "7" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{`[]`, `{"a":1} {}`, `nope`, `{"a":{"b":1}}`, `{"a":[1]}`} {
		if _, err := JSONFields([]byte(bad), "a"); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
