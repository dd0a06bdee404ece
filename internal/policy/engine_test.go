package policy_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/venue"
)

type ruleCase struct {
	name     string
	policies string                 // YAML under policies:
	mod      func(in *policy.Input) // adjusts orderInput("p")
	want     string                 // denying rule; "" = allowed
	notional string                 // expected Decision.Notional, if set
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := policy.New(policy.Options{})
			e.Load(compile(t, "policies:\n"+tc.policies))
			in := orderInput("p")
			if tc.mod != nil {
				tc.mod(in)
			}
			d := e.Evaluate(context.Background(), in)
			if d.Allow != (tc.want == "") || d.Rule != tc.want {
				t.Fatalf("decision %+v, want rule %q", d, tc.want)
			}
			if d.Allow && (d.Status != 0 || d.Reason != "") {
				t.Errorf("allowed with status %d reason %q", d.Status, d.Reason)
			}
			if !d.Allow && d.Status != http.StatusForbidden && d.Status != http.StatusTooManyRequests {
				t.Errorf("denied with status %d", d.Status)
			}
			if !d.Allow && d.Reason == "" {
				t.Errorf("denial without a reason")
			}
			if tc.notional != "" && d.Notional != tc.notional {
				t.Errorf("notional %q, want %q", d.Notional, tc.notional)
			}
		})
	}
}

func op(name string) func(*policy.Input) {
	return func(in *policy.Input) { in.Operation = name; in.Order = nil }
}

func TestVenueAndOperationRules(t *testing.T) {
	runCases(t, []ruleCase{
		{"venue listed", "  p:\n    venues: [binance]\n", nil, "", ""},
		{"venue not listed", "  p:\n    venues: [okx]\n", nil, "policy.p.venue", ""},
		{"op glob", "  p:\n    operations: [\"order.*\"]\n", nil, "", ""},
		{"op not listed", "  p:\n    operations: [market.read]\n", nil, "policy.p.operation", ""},
		{"empty op denied", "  p: {}\n", op(""), "policy.p.operation", ""},
		{"default ops allow reads", "  p: {}\n", op(venue.OpAccountRead), "", ""},
		{"default ops refuse withdraw", "  p: {}\n", op(venue.OpWalletWithdraw), "policy.p.operation", ""},
		{"star never enables withdraw", "  p:\n    operations: [\"*\"]\n", op(venue.OpWalletWithdraw), "policy.p.operation", ""},
		{"wallet glob never enables transfer", "  p:\n    operations: [\"wallet.*\"]\n", op(venue.OpWalletTransfer), "policy.p.operation", ""},
		{"question glob never enables apikey", "  p:\n    operations: [\"apikey.manag?\"]\n", op(venue.OpAPIKeyManage), "policy.p.operation", ""},
		{"literal withdraw", "  p:\n    operations: [wallet.withdraw]\n", op(venue.OpWalletWithdraw), "", ""},
		{"literal apikey", "  p:\n    operations: [apikey.manage, \"*\"]\n", op(venue.OpAPIKeyManage), "", ""},
		{"unknown policy", "  q: {}\n", nil, policy.RuleUnknownPolicy, ""},
		{"policies.default used for tokens without a policy", "  default:\n    operations: [market.read]\n",
			func(in *policy.Input) { in.Policy = "" }, "policy.default.operation", ""},
	})
}

func TestBuiltinDefault(t *testing.T) {
	e := policy.New(policy.Options{}) // nothing loaded
	for op, want := range map[string]string{
		venue.OpOrderPlace: "", venue.OpMarketRead: "", venue.OpWalletWithdraw: "policy.default.operation",
		venue.OpWalletTransfer: "policy.default.operation", venue.OpAPIKeyManage: "policy.default.operation",
	} {
		in := orderInput("")
		in.Operation = op
		if d := e.Evaluate(context.Background(), in); d.Rule != want || d.Allow != (want == "") {
			t.Errorf("%s: %+v, want %q", op, d, want)
		}
	}
	in := orderInput("scalper")
	if d := e.Evaluate(context.Background(), in); d.Rule != policy.RuleUnknownPolicy {
		t.Errorf("unknown policy with no set loaded: %+v", d)
	}
	e.Load(nil)
	if d := e.Evaluate(context.Background(), orderInput("")); !d.Allow {
		t.Errorf("Load(nil): %+v", d)
	}
}

func order(f func(o *venue.Order)) func(*policy.Input) {
	return func(in *policy.Input) { f(in.Order) }
}

func TestOrderRules(t *testing.T) {
	inst := "  p:\n    instruments:\n      allow: [BTCUSDT, \"eth*\", \"BTC*\"]\n      deny: [\"*DOWN*\"]\n"
	runCases(t, []ruleCase{
		{"instrument allowed", inst, nil, "", ""},
		{"instrument case-insensitive", inst, order(func(o *venue.Order) { o.Instrument = "ethusdt" }), "", ""},
		{"instrument not allowed", inst, order(func(o *venue.Order) { o.Instrument = "SOLUSDT" }), "policy.p.instrument", ""},
		{"instrument deny wins", inst, order(func(o *venue.Order) { o.Instrument = "BTCDOWNUSDT" }), "policy.p.instrument", ""},
		{"instrument empty", inst, order(func(o *venue.Order) { o.Instrument = "" }), "policy.p.unreadable_order", ""},
		{"read op ignores order rules", inst, op(venue.OpMarketRead), "", ""},
		{"side allowed", "  p:\n    sides: [buy]\n", nil, "", ""},
		{"side denied", "  p:\n    sides: [buy]\n", order(func(o *venue.Order) { o.Side = "sell" }), "policy.p.side", ""},
		{"side missing", "  p:\n    sides: [buy, sell]\n", order(func(o *venue.Order) { o.Side = "" }), "policy.p.side", ""},
		{"type allowed", "  p:\n    order_types: [limit]\n", nil, "", ""},
		{"type denied", "  p:\n    order_types: [limit]\n", order(func(o *venue.Order) { o.Type = "market" }), "policy.p.order_type", ""},
		{"qty at max", "  p:\n    max_quantity: \"0.01\"\n", nil, "", ""},
		{"qty above max", "  p:\n    max_quantity: \"0.01\"\n", order(func(o *venue.Order) { o.Quantity = "0.010000001" }), "policy.p.max_quantity", ""},
		{"qty unknown", "  p:\n    max_quantity: \"1\"\n", order(func(o *venue.Order) { o.Quantity = ""; o.Price = ""; o.Notional = "100" }), "policy.p.max_quantity", ""},
		{"qty unreadable", "  p:\n    max_quantity: \"1\"\n", order(func(o *venue.Order) { o.Quantity = "1e-3" }), "policy.p.unreadable_order", ""},
		{"qty negative", "  p:\n    max_quantity: \"1\"\n", order(func(o *venue.Order) { o.Quantity = "-1" }), "policy.p.unreadable_order", ""},
		{"order nil", "  p:\n    sides: [buy]\n", func(in *policy.Input) { in.Order = nil }, "policy.p.unreadable_order", ""},
		{"order error", "  p:\n    sides: [buy]\n", func(in *policy.Input) { in.OrderErr = errors.New("bad body") }, "policy.p.unreadable_order", ""},
		{"no order rules: nil order allowed", "  p:\n    operations: [\"order.*\"]\n", func(in *policy.Input) { in.Order = nil }, "", ""},
	})
}

func TestNotionalRules(t *testing.T) {
	mn := "  p:\n    max_notional: \"400 USDT\"\n"
	two := "  p:\n    max_notional: [\"400 USDT\", \"300 usdc\"]\n"
	runCases(t, []ruleCase{
		{"limit under max", mn, nil, "", "375 USDT"},
		{"limit over max", mn, order(func(o *venue.Order) { o.Quantity = "0.011" }), "policy.p.max_notional", "412.5 USDT"},
		// In float64 this is 400.0 and would pass; exactly it is 400.00000000000000125.
		{"exact decimal, no float", mn, order(func(o *venue.Order) { o.Quantity = "0.0106666666666666667"; o.Price = "37500" }), "policy.p.max_notional", "400.00000000000000125 USDT"},
		{"at max exactly", mn, order(func(o *venue.Order) { o.Quantity = "0.01"; o.Price = "40000" }), "", "400 USDT"},
		{"currency without entry", mn, order(func(o *venue.Order) { o.Instrument = "BTCUSDC" }), "policy.p.currency", ""},
		{"second currency", two, order(func(o *venue.Order) { o.Instrument = "BTC-USDC"; o.Quantity = "0.008" }), "", "300 USDC"},
		{"second currency over", two, order(func(o *venue.Order) { o.Instrument = "BTC-USDC" }), "policy.p.max_notional", ""},
		{"unknown quote", mn, order(func(o *venue.Order) { o.Instrument = "FOOBAR" }), "policy.p.currency", ""},
		{"quote amount", mn, order(func(o *venue.Order) { o.Type = "market"; o.Quantity = ""; o.Price = ""; o.Notional = "100" }), "", "100 USDT"},
		{"quote amount over", mn, order(func(o *venue.Order) { o.Type = "market"; o.Quantity = ""; o.Price = ""; o.Notional = "400.01" }), "policy.p.max_notional", ""},
		{"market qty without reference", mn, order(func(o *venue.Order) { o.Type = "market"; o.Price = "" }), "policy.p.notional_unknown", ""},
		{"market qty with reference", mn, func(in *policy.Input) {
			in.Order.Type, in.Order.Price = "market", ""
			in.Prices = policy.StaticPrices{"BTCUSDT": decimal.RequireFromString("39000")}
		}, "", "390 USDT"},
		{"market qty with reference over", mn, func(in *policy.Input) {
			in.Order.Type, in.Order.Price = "market", ""
			in.Prices = policy.StaticPrices{"BTCUSDT": decimal.RequireFromString("41000")}
		}, "policy.p.max_notional", "410 USDT"},
		{"nothing to compute from", mn, order(func(o *venue.Order) { o.Quantity = ""; o.Price = "" }), "policy.p.notional_unknown", ""},
		{"price unreadable", mn, order(func(o *venue.Order) { o.Price = "NaN" }), "policy.p.unreadable_order", ""},
	})
}

// TestMarketAndTriggerCharges: an order is charged at the worst price it
// may fill at — a market order at the reference price whatever price it
// carries, a stop order at the worse of trigger and limit (and the market
// for stop-market legs), a sell at no less than the market, a size the
// venue may read either way at the larger reading — and refused when that
// cannot be known (no reference price, contracts of unknown size, a zero
// size that closes a whole position).
func TestMarketAndTriggerCharges(t *testing.T) {
	mn := "  p:\n    max_notional: \"100 USDT\"\n"
	big := "  p:\n    max_notional: \"1000000 USDT\"\n"
	ref := func(p string, mod func(o *venue.Order)) func(*policy.Input) {
		return func(in *policy.Input) {
			in.Prices = policy.StaticPrices{"BTCUSDT": decimal.RequireFromString(p)}
			mod(in.Order)
		}
	}
	fake := func(o *venue.Order) { o.Type, o.Market, o.Quantity, o.Price = "market", true, "10", "" }
	runCases(t, []ruleCase{
		{"fake-price market order judged at the reference", mn, ref("37500", fake), "policy.p.max_notional", "375000 USDT"},
		{"market order without a reference price", mn, order(fake), "policy.p.notional_unknown", ""},
		{"market flag wins over a price", big, ref("37500", func(o *venue.Order) {
			o.Type, o.Market, o.Quantity, o.Price = "weird", true, "1", "1"
		}), "", "37500 USDT"},
		{"market quote amount needs no reference", mn, order(func(o *venue.Order) {
			o.Type, o.Market, o.Quantity, o.Price, o.Notional = "market", true, "", "", "50"
		}), "", "50 USDT"},
		{"either size: the larger charge", big, ref("37500", func(o *venue.Order) {
			o.Type, o.Market, o.Quantity, o.Price, o.Notional = "market", true, "2", "", "2"
		}), "", "75000 USDT"},
		{"either size: the quote reading when larger", big, ref("0.5", func(o *venue.Order) {
			o.Type, o.Market, o.Quantity, o.Price, o.Notional = "market", true, "2", "", "2"
		}), "", "2 USDT"},
		{"stop market: the trigger when above the market", big, ref("37500", func(o *venue.Order) {
			o.Type, o.Market, o.Quantity, o.Price, o.TriggerPrice = "stop_loss", true, "1", "", "39000"
		}), "", "39000 USDT"},
		{"stop market: the market when above the trigger", big, ref("37500", func(o *venue.Order) {
			o.Type, o.Market, o.Quantity, o.Price, o.TriggerPrice = "stop_loss", true, "1", "", "1"
		}), "", "37500 USDT"},
		{"stop limit buy: the worse of trigger and limit", big, order(func(o *venue.Order) {
			o.Type, o.Quantity, o.Price, o.TriggerPrice = "stop_loss_limit", "1", "39000", "39500"
		}), "", "39500 USDT"},
		{"oco legs: the worst leg", big, ref("37500", func(o *venue.Order) {
			o.Type, o.Side, o.Quantity, o.Price, o.TriggerPrice, o.LegPrices = "oco", "sell", "1", "41000", "36000", []string{"35500"}
		}), "", "41000 USDT"},
		{"sell limit below the market fills at the market", mn, ref("37500", func(o *venue.Order) {
			o.Side, o.Quantity, o.Price = "sell", "10", "1"
		}), "policy.p.max_notional", "375000 USDT"},
		{"sell limit above the market", big, ref("37500", func(o *venue.Order) { o.Side, o.Price = "sell", "40000" }), "", "400 USDT"},
		{"sell limit without a reference price", mn, order(func(o *venue.Order) { o.Side = "sell" }), "policy.p.notional_unknown", ""},
		{"edit without a side: the market too", big, ref("37500", func(o *venue.Order) {
			o.Side, o.Type, o.Market, o.Quantity, o.Price = "", "edit", true, "1", "3"
		}), "", "37500 USDT"},
		{"buy limit needs no reference", mn, nil, "policy.p.max_notional", "375 USDT"},
		{"contracts of unknown size", big, ref("37500", func(o *venue.Order) { o.Contracts = true }), "policy.p.notional_unknown", ""},
		{"zero quantity closes a position", big, ref("37500", func(o *venue.Order) { o.Quantity = "0" }), "policy.p.notional_unknown", ""},
		{"zero quote amount", big, order(func(o *venue.Order) { o.Quantity, o.Price, o.Notional = "", "", "0" }), "policy.p.notional_unknown", ""},
		{"trigger unreadable", big, order(func(o *venue.Order) { o.TriggerPrice = "+50" }), "policy.p.unreadable_order", ""},
		{"leg unreadable", big, order(func(o *venue.Order) { o.LegPrices = []string{"5%"} }), "policy.p.unreadable_order", ""},
		{"contracts against max_quantity", "  p:\n    max_quantity: \"5\"\n", order(func(o *venue.Order) { o.Contracts = true }), "policy.p.max_quantity", ""},
		{"zero against max_quantity", "  p:\n    max_quantity: \"5\"\n", order(func(o *venue.Order) { o.Quantity = "0" }), "policy.p.max_quantity", ""},
	})
}

func TestPriceBand(t *testing.T) {
	band := "  p:\n    price_band: \"5%\"\n"
	ref := func(p string) func(*policy.Input) {
		return func(in *policy.Input) { in.Prices = policy.StaticPrices{"BTCUSDT": decimal.RequireFromString(p)} }
	}
	runCases(t, []ruleCase{
		{"inside band", band, ref("37000"), "", ""},
		{"6.25% below the reference", band, ref("40000"), "policy.p.price_band", ""},
		{"exactly 5%", band, func(in *policy.Input) {
			in.Order.Price = "42000"
			in.Prices = policy.StaticPrices{"BTCUSDT": decimal.RequireFromString("40000")}
		}, "", ""},
		{"just over 5%", band, func(in *policy.Input) {
			in.Order.Price = "42000.01"
			in.Prices = policy.StaticPrices{"BTCUSDT": decimal.RequireFromString("40000")}
		}, "policy.p.price_band", ""},
		{"below band", band, ref("50000"), "policy.p.price_band", ""},
		{"no price source", band, nil, "policy.p.price_band", ""},
		{"source has no price", band, func(in *policy.Input) { in.Prices = policy.StaticPrices{} }, "policy.p.price_band", ""},
		{"market order: band n/a", band, order(func(o *venue.Order) { o.Type = "market"; o.Price = "" }), "", ""},
	})
}

func TestHours(t *testing.T) {
	ny := "  p:\n    time_zone: America/New_York\n    hours: [\"Mon-Fri 09:30-16:00\"]\n"
	night := "  p:\n    hours: [\"Fri 22:00-02:00\", \"Sat 10:00-12:00\"]\n"
	at := func(tm time.Time) func(*policy.Input) { return func(in *policy.Input) { in.Time = tm } }
	d := func(day, h, m int) time.Time { return time.Date(2025, 1, 5+day, h, m, 0, 0, time.UTC) } // day 0 = Sunday
	runCases(t, []ruleCase{
		{"NY before open (14:00Z = 09:00 EST)", ny, at(d(1, 14, 0)), "policy.p.hours", ""},
		{"NY open (14:30Z)", ny, at(d(1, 14, 30)), "", ""},
		{"NY after close (21:00Z)", ny, at(d(1, 21, 0)), "policy.p.hours", ""},
		{"NY summer time (13:30Z = 09:30 EDT)", ny, at(time.Date(2025, 7, 7, 13, 30, 0, 0, time.UTC)), "", ""},
		{"NY Saturday", ny, at(d(6, 15, 0)), "policy.p.hours", ""},
		{"Friday night", night, at(d(5, 23, 0)), "", ""},
		{"after midnight", night, at(d(6, 1, 30)), "", ""},
		{"window over", night, at(d(6, 2, 0)), "policy.p.hours", ""},
		{"Saturday window", night, at(d(6, 11, 0)), "", ""},
		{"Thursday night", night, at(d(4, 23, 0)), "policy.p.hours", ""},
		{"hours apply to reads", night, func(in *policy.Input) { in.Time = d(4, 23, 0); op(venue.OpMarketRead)(in) }, "policy.p.hours", ""},
	})
}

func TestExpr(t *testing.T) {
	ex := "  p:\n    expr: 'order.side == \"sell\" || dec_lt(order.quantity, \"0.02\")'\n"
	runCases(t, []ruleCase{
		{"expr true", ex, nil, "", ""},
		{"expr false", ex, order(func(o *venue.Order) { o.Quantity = "0.05" }), "policy.p.expr", ""},
		{"expr true by side", ex, order(func(o *venue.Order) { o.Quantity = "5"; o.Side = "sell" }), "", ""},
		{"expr error denies", ex, op(venue.OpMarketRead), "policy.p.expr", ""}, // dec_lt("", ...) fails
		{"request fields", "  p:\n    expr: 'request.venue == \"binance\" && request.method == \"POST\" && request.path.startsWith(\"/api\") && request.token == \"tok_a\"'\n", nil, "", ""},
		{"time is a timestamp", "  p:\n    expr: 'request.time.getDayOfWeek() == 1 && request.time.getHours() == 12'\n", nil, "", ""},
		{"notional and currency", "  p:\n    max_notional: \"1000 USDT\"\n    expr: 'order.currency == \"USDT\" && dec_eq(order.notional, \"375\")'\n", nil, "", ""},
		{"dec helpers", "  p:\n    expr: 'dec_le(\"1.0\", \"1\") && dec_ge(\"2\", \"1.99\") && dec_gt(\"0.10\", \"0.09\") && !dec_lt(\"1\", \"1\")'\n", nil, "", ""},
		{"guarded read", "  p:\n    expr: 'order.instrument == \"\" || dec_lt(order.quantity, \"1\")'\n", op(venue.OpMarketRead), "", ""},
		{"cost limit", "  p:\n    expr: '[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))'\n", nil, "policy.p.expr", ""},
	})
}

func TestRate(t *testing.T) {
	ctx := context.Background()
	e := policy.New(policy.Options{})
	e.Load(compile(t, "policies:\n  p:\n    rate:\n      - scope: token\n        limit: \"2/s\"\n      - scope: account\n        limit: \"3/s\"\n"))
	req := func(tok, acct string, at time.Time, dry bool) *policy.Decision {
		in := orderInput("p")
		in.TokenID, in.Account, in.Time, in.DryRun = tok, acct, at, dry
		in.Operation, in.Order = venue.OpMarketRead, nil
		return e.Evaluate(ctx, in)
	}
	// Dry runs never consume.
	for range 10 {
		if d := req("tok_a", "acct1", monday, true); !d.Allow {
			t.Fatalf("dry run denied: %+v", d)
		}
	}
	for i := range 2 {
		if d := req("tok_a", "acct1", monday, false); !d.Allow {
			t.Fatalf("request %d denied: %+v", i, d)
		}
	}
	d := req("tok_a", "acct1", monday, false)
	if d.Allow || d.Rule != "policy.p.rate" || d.Status != http.StatusTooManyRequests || d.RetryAfter <= 0 || d.RetryAfter > 500*time.Millisecond {
		t.Fatalf("third request: %+v", d)
	}
	if d := req("tok_a", "acct1", monday, true); d.Allow || d.RetryAfter <= 0 {
		t.Fatalf("dry run of an exhausted bucket: %+v", d)
	}
	// Another token of the same account: its own token bucket, but the
	// account's (3/s) has one left; the denial above took nothing.
	if d := req("tok_b", "acct1", monday, false); !d.Allow {
		t.Fatalf("tok_b: %+v", d)
	}
	if d := req("tok_c", "acct1", monday, false); d.Allow || d.Rule != "policy.p.rate" {
		t.Fatalf("account bucket should be empty: %+v", d)
	}
	// A token denied by the account bucket had its token-bucket take
	// undone: after the account refills it still has 2.
	if d := req("tok_c", "acct2", monday, false); !d.Allow {
		t.Fatalf("other account: %+v", d)
	}
	if d := req("tok_c", "acct2", monday, false); !d.Allow {
		t.Fatalf("tok_c second (token bucket should have had its first take undone): %+v", d)
	}
	later := monday.Add(time.Second)
	if d := req("tok_a", "acct1", later, false); !d.Allow {
		t.Fatalf("after refill: %+v", d)
	}
}

func TestEvaluateConcurrentReload(t *testing.T) {
	// Evaluate and Load race-free (run with -race): decisions are from one
	// Set or the other, never a mix.
	a := compile(t, "policies:\n  p:\n    sides: [buy]\n")
	b := compile(t, "policies:\n  p:\n    sides: [sell]\n")
	e := policy.New(policy.Options{})
	e.Load(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if i%2 == 0 {
				e.Load(b)
			} else {
				e.Load(a)
			}
		}
	}()
	for range 500 {
		d := e.Evaluate(context.Background(), orderInput("p"))
		if !d.Allow && d.Rule != "policy.p.side" {
			t.Fatalf("%+v", d)
		}
	}
	<-done
}

func TestDecisionReasonHasNoToken(t *testing.T) {
	// Reasons go to the audit log: they name rules and values, never the
	// bearer token (the engine never sees it) — but also not the query's
	// values.
	e := policy.New(policy.Options{})
	e.Load(compile(t, "policies:\n  p:\n    expr: 'request.query == \"\"'\n"))
	in := orderInput("p")
	in.RawQuery = "signature=CANARYSIG123"
	d := e.Evaluate(context.Background(), in)
	if d.Allow || strings.Contains(d.Reason, "CANARYSIG123") {
		t.Fatalf("%+v", d)
	}
}
