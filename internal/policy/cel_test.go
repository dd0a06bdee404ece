package policy

import (
	"testing"
	"time"

	"cel.dev/cel-go/cel"
)

// FuzzCELInput builds the CEL activation from arbitrary request and order
// fields and evaluates an expression reading every one of them: no panic,
// and each value reaches the expression unchanged.
func FuzzCELInput(f *testing.F) {
	base, err := newCELEnv()
	if err != nil {
		f.Fatal(err)
	}
	env, err := base.Extend(cel.Variable("want", cel.StringType))
	if err != nil {
		f.Fatal(err)
	}
	prg, err := compileExpr(env, `request.venue + request.operation + request.method + request.path + request.query + request.token +
		order.instrument + order.side + order.type + order.quantity + order.price + order.notional + order.currency + order.client_order_id == want &&
		request.time.getFullYear() > 0`)
	if err != nil {
		f.Fatal(err)
	}
	p2, err := compileExpr(base, `dec_lt(order.quantity, order.price) || dec_eq(order.notional, "1")`)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("binance", "order.place", "POST", "/api/v3/order", "symbol=BTCUSDT", "tok_a", "BTCUSDT", "buy", "limit", "0.1", "37500", "", "USDT", "c1", int64(0))
	f.Add("", "", "", "", "", "", "", "", "", "", "", "", "", "", int64(-1<<62))
	f.Add("\xff", "\x00", "é", "%2F", "a=b&c", "tok", "x", "y", "z", "1e5", "NaN", "-0", "U$", "\"'", int64(1<<62))
	f.Fuzz(func(t *testing.T, ven, op, method, path, query, tok, inst, side, typ, qty, price, notional, cur, cid string, ns int64) {
		in := &Input{Venue: ven, Operation: op, Method: method, Path: path, RawQuery: query, TokenID: tok, Time: time.Unix(0, ns)}
		o := &orderView{Instrument: inst, Side: side, Type: typ, Quantity: qty, Price: price, Notional: notional, Currency: cur, ClientOrderID: cid}
		vars := celVars(in, o)
		vars["want"] = ven + op + method + path + query + tok + inst + side + typ + qty + price + notional + cur + cid
		ok, err := evalExpr(prg, vars)
		if err != nil || !ok {
			t.Fatalf("fields did not reach the expression unchanged: %v, %v", ok, err)
		}
		// The same through the Engine's helpers: decimal helpers over the
		// fuzzed strings either compare or fail, never panic.
		_, _ = evalExpr(p2, celVars(in, o))
		_, _ = evalExpr(p2, celVars(in, nil))
	})
}
