package config

import (
	"reflect"
	"testing"
)

func TestPoliciesDecodeAndLocate(t *testing.T) {
	src := `venues:
  binance:
    type: binance
    credential: bn
    base_url: "https://api.binance.com"
policies:
  one:
    max_notional: "250 USDT"
    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000 USDT"
  two:
    max_notional: ["1 USDT", "2 EUR"]
    rate:
      - scope: account
        limit: "5/s"
        burst: 7
`
	c, err := Parse("k.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Policies["one"].MaxNotional; !reflect.DeepEqual(got, Amounts{"250 USDT"}) {
		t.Errorf("single amount: %q", got)
	}
	if got := c.Policies["two"].MaxNotional; !reflect.DeepEqual(got, Amounts{"1 USDT", "2 EUR"}) {
		t.Errorf("list: %q", got)
	}
	if r := c.Policies["two"].Rate; len(r) != 1 || r[0].Burst != 7 || r[0].Limit != "5/s" {
		t.Errorf("rate: %+v", r)
	}
	for key, want := range map[string][2]int{
		"policies.one.max_notional":              {8, 5},
		"policies.one.budgets[0].limit":          {13, 9},
		"policies.one.budgets[0].limit.whatever": {13, 9}, // nearest written ancestor
		"policies.two.max_notional[1]":           {15, 30},
		"nowhere.at.all":                         {1, 7}, // the document root, as Parse reports it
	} {
		f, l, col := c.Locate(key)
		if f != "k.yaml" || l != want[0] || col != want[1] {
			t.Errorf("Locate(%q) = %s:%d:%d, want %v", key, f, l, col, want)
		}
	}
	if f, l, col := Default().Locate("venues"); f != "" || l != 0 || col != 0 {
		t.Errorf("a Config not from Parse: %s:%d:%d", f, l, col)
	}
	// Amounts only: other lists still refuse a lone string.
	if _, err := Parse("k.yaml", []byte("policies:\n  p:\n    sides: buy\n")); err == nil {
		t.Error("sides: buy (not a list) accepted")
	}
	if _, err := Parse("k.yaml", []byte("policies:\n  p:\n    max_notional: 250\n")); err == nil {
		t.Error("max_notional: 250 (a number) accepted")
	}
}
