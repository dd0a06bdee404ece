package policy_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/bybit"
	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/okx"
)

// The property: for every order a venue would execute, the notional the
// policy charges is at least the notional the venue would fill at the
// reference price. Each venue below is modelled from its own API
// documentation, independently of its normalizer: a generator draws a
// raw order request from the venue's parameters (with the adversarial
// ones: a price on a market order, both sizes, triggers, relative prices,
// sizes the account type reads differently, derivatives) and computes the
// most the venue could fill it for at reference price ref. Where the docs
// leave a reading open, the model takes the largest. The request then
// goes through the venue's Normalize and the policy engine; an order the
// policy allows must be charged at least that much.

// outcome is what a venue model says of one request.
type outcome struct {
	path, query, body string
	rejects           bool            // the venue refuses the order: nothing fills
	unbounded         bool            // the fill cannot be bounded from the request (contracts, closing a position, another currency)
	fill              decimal.Decimal // the most the venue fills it for at ref
}

// picker draws choices from a byte stream (fuzzing) or a PRNG.
type picker struct {
	data []byte
	rng  *rand.Rand
}

func (p *picker) n(k int) int {
	if p.rng != nil {
		return p.rng.IntN(k)
	}
	if len(p.data) == 0 {
		return 0
	}
	b := p.data[0]
	p.data = p.data[1:]
	return int(b) % k
}

func (p *picker) of(vals ...string) string { return vals[p.n(len(vals))] }

var (
	qtys    = []string{"", "0", "0.001", "1", "10"}
	prices  = []string{"", "1", "30000", "37500", "45000"}
	refs    = []string{"0.5", "37500", "1000000"}
	maxFill = decimal.New(1, 30)
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// at is q × max(p, and ref when withRef), for plain decimal strings.
func at(q string, withRef bool, ref decimal.Decimal, ps ...string) decimal.Decimal {
	worst := decimal.Zero
	if withRef {
		worst = ref
	}
	for _, p := range ps {
		if p != "" {
			worst = decimal.Max(worst, d(p))
		}
	}
	return d(q).Mul(worst)
}

// form joins non-empty pairs in order.
func form(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			parts = append(parts, kv[i]+"="+url.QueryEscape(kv[i+1]))
		}
	}
	return strings.Join(parts, "&")
}

// jsonBody marshals non-empty members.
func jsonBody(kv ...string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			m[kv[i]] = kv[i+1]
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// binanceModel: POST /api/v3/order (rest-api.md, "New order"): MARKET
// takes quantity or quoteOrderQty (price is no MARKET parameter: ignored
// here, the worse case); LIMIT/LIMIT_MAKER quantity at price; STOP_LOSS
// and TAKE_PROFIT a MARKET order at stopPrice; *_LIMIT a limit order at
// price once stopPrice is reached; unknown types are refused.
func binanceModel(p *picker, ref decimal.Decimal) outcome {
	side := p.of("BUY", "SELL")
	typ := p.of("MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS", "TAKE_PROFIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "NEW_KIND", "market")
	q, qq, pr, stop := p.of(qtys...), p.of("", "50", "100000"), p.of(prices...), p.of(prices...)
	peg := p.of("", "", "", "PRIMARY_PEG")
	o := outcome{path: "/api/v3/order", query: form("symbol", "BTCUSDT", "side", side, "type", typ, "quantity", q,
		"quoteOrderQty", qq, "price", pr, "stopPrice", stop, "pegPriceType", peg)}
	sell := side == "SELL"
	switch strings.ToUpper(typ) {
	case "MARKET":
		switch {
		case q == "" && qq == "":
			o.rejects = true
		case q == "":
			o.fill = d(qq)
		case qq == "":
			o.fill = at(q, true, ref)
		default: // undocumented: either
			o.fill = decimal.Max(at(q, true, ref), d(qq))
		}
	case "LIMIT", "LIMIT_MAKER":
		if q == "" || pr == "" {
			o.rejects = true
			break
		}
		o.fill = at(q, sell || peg != "", ref, pr)
	case "STOP_LOSS", "TAKE_PROFIT":
		if q == "" || stop == "" {
			o.rejects = true
			break
		}
		o.fill = at(q, true, ref, stop)
	case "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT":
		if q == "" || pr == "" || stop == "" {
			o.rejects = true
			break
		}
		if sell {
			o.fill = at(q, true, ref, pr, stop)
		} else {
			o.fill = at(q, peg != "", ref, pr)
		}
	default:
		o.rejects = true
	}
	if !o.rejects && qq != "" && strings.ToUpper(typ) != "MARKET" {
		// quoteOrderQty is no parameter of these types: if Binance took
		// it rather than refusing, it could be the size.
		o.fill = decimal.Max(o.fill, d(qq))
	}
	if !o.rejects && q == "0" {
		o.rejects = true // Binance refuses a zero quantity (LOT_SIZE)
	}
	return o
}

// krakenModel: POST /0/private/AddOrder: price is the limit of limit and
// iceberg orders and the trigger of stop-loss, take-profit and
// trailing-stop ones, price2 the limit of the *-limit ones; a market
// order ignores price; prices may be relative (+5, -5, #5, 5%) to the
// last trade; viqc gives the volume in quote currency; volume 0 closes a
// whole margin position.
func krakenModel(p *picker, ref decimal.Decimal) outcome {
	side := p.of("buy", "sell")
	typ := p.of("market", "limit", "iceberg", "stop-loss", "take-profit", "stop-loss-limit", "take-profit-limit", "trailing-stop", "settle-position", "bogus")
	vol, pr, pr2 := p.of(qtys...), p.of(append(prices, "+5000", "#5000", "50%")...), p.of(append(prices, "+5000")...)
	viqc := p.n(4) == 0
	oflags := ""
	if viqc {
		oflags = "viqc"
	}
	o := outcome{path: "/0/private/AddOrder", body: form("pair", "XBTUSD", "type", side, "ordertype", typ, "volume", vol,
		"price", pr, "price2", pr2, "oflags", oflags)}
	sell := side == "sell"
	relative := func(s string) bool { return strings.ContainsAny(s, "+-#%") }
	size := func(withRef bool, ps ...string) decimal.Decimal {
		for _, x := range ps {
			if relative(x) {
				// Relative to the last trade: up to any offset.
				return maxFill
			}
		}
		if viqc {
			return d(vol)
		}
		return at(vol, withRef, ref, ps...)
	}
	switch {
	case vol == "":
		o.rejects = true
		return o
	case vol == "0":
		o.unbounded = true
		return o
	}
	switch typ {
	case "market":
		o.fill = size(true)
	case "limit", "iceberg":
		if pr == "" {
			o.rejects = true
			break
		}
		o.fill = size(sell, pr)
	case "stop-loss", "take-profit", "trailing-stop":
		if pr == "" {
			o.rejects = true
			break
		}
		o.fill = size(true, pr)
	case "stop-loss-limit", "take-profit-limit":
		if pr == "" || pr2 == "" {
			o.rejects = true
			break
		}
		if sell {
			o.fill = size(true, pr, pr2)
		} else {
			o.fill = size(false, pr2)
		}
	case "settle-position":
		o.unbounded = true
	default:
		o.rejects = true
	}
	return o
}

// okxModel: POST /api/v5/trade/order: px only for limit, post_only, fok,
// ioc; a market order executes at the market; a SPOT market order's sz is
// in tgtCcy (default quote for buy, base for sell); a MARGIN one (a
// margin tdMode) in quote for buy and base for sell; FUTURES/SWAP sz is
// contracts of ctVal each; tradeQuoteCcy trades in another currency.
func okxModel(p *picker, ref decimal.Decimal) outcome {
	inst := p.of("BTC-USDT", "BTC-USDT", "BTC-USDT", "BTC-USDT-SWAP")
	side := p.of("buy", "sell")
	typ := p.of("market", "limit", "post_only", "fok", "ioc", "optimal_limit_ioc", "bogus")
	td := p.of("cash", "cross", "isolated")
	tgt := p.of("", "base_ccy", "quote_ccy")
	sz, px := p.of(qtys...), p.of(prices...)
	tq := p.of("", "", "", "USDT", "USDC")
	o := outcome{path: "/api/v5/trade/order", body: jsonBody("instId", inst, "tdMode", td, "side", side, "ordType", typ, "sz", sz,
		"px", px, "tgtCcy", tgt, "tradeQuoteCcy", tq)}
	sell := side == "sell"
	switch {
	case sz == "":
		o.rejects = true
		return o
	case strings.Count(inst, "-") > 1, sz == "0", tq == "USDC":
		o.unbounded = true
		return o
	}
	switch typ {
	case "limit", "post_only", "fok", "ioc":
		if px == "" {
			o.rejects = true
			break
		}
		o.fill = at(sz, sell, ref, px)
	case "market":
		spotQuote := !sell
		if tgt != "" {
			spotQuote = tgt == "quote_ccy"
		}
		reading := func(quote bool) decimal.Decimal {
			if quote {
				return d(sz)
			}
			return at(sz, true, ref)
		}
		o.fill = reading(spotQuote)
		if td != "cash" {
			o.fill = decimal.Max(o.fill, reading(!sell))
		}
	default: // optimal_limit_ioc is for futures only
		o.rejects = true
	}
	return o
}

// bybitModel: POST /v5/order/create: Market ignores price; a spot Market
// buy is by value (quote) and a sell by qty (base) by default, marketUnit
// switching that for unified accounts only; triggerPrice makes a
// conditional order; qty 0 closes a position.
func bybitModel(p *picker, ref decimal.Decimal) outcome {
	cat := p.of("spot", "spot", "linear")
	side := p.of("Buy", "Sell")
	typ := p.of("Market", "Limit")
	qty, pr, trig := p.of(qtys...), p.of(prices...), p.of("", "", "30000", "45000")
	unit := p.of("", "", "baseCoin", "quoteCoin")
	o := outcome{path: "/v5/order/create", body: jsonBody("category", cat, "symbol", "BTCUSDT", "side", side, "orderType", typ,
		"qty", qty, "price", pr, "triggerPrice", trig, "marketUnit", unit)}
	sell := side == "Sell"
	switch {
	case qty == "":
		o.rejects = true
		return o
	case qty == "0":
		o.unbounded = true
		return o
	}
	if typ == "Limit" {
		if pr == "" {
			o.rejects = true
			return o
		}
		o.fill = at(qty, sell, ref, pr)
		if sell && trig != "" {
			o.fill = at(qty, true, ref, pr, trig)
		}
		return o
	}
	base := at(qty, true, ref, trig)
	if cat != "spot" {
		o.fill = base
		return o
	}
	reading := func(quote bool) decimal.Decimal {
		if quote {
			return d(qty)
		}
		return base
	}
	o.fill = reading(!sell) // the default, which classic accounts keep
	if unit != "" {         // unified accounts read marketUnit
		o.fill = decimal.Max(o.fill, reading(unit == "quoteCoin"))
	}
	return o
}

// coinbaseModel: POST /api/v3/brokerage/orders: market_market_ioc takes
// base_size or quote_size; limit_limit_gtc base_size or quote_size at
// limit_price; stop_limit_stop_limit_gtc base_size at limit_price once
// stop_price is reached.
func coinbaseModel(p *picker, ref decimal.Decimal) outcome {
	side := p.of("BUY", "SELL")
	cfg := p.of("market_market_ioc", "limit_limit_gtc", "stop_limit_stop_limit_gtc")
	bs, qs := p.of(qtys...), p.of("", "", "50", "100000")
	lp, sp := p.of(prices...), p.of(prices...)
	member := map[string]string{}
	for k, v := range map[string]string{"base_size": bs, "quote_size": qs, "limit_price": lp, "stop_price": sp} {
		if v != "" {
			member[k] = v
		}
	}
	b, _ := json.Marshal(map[string]any{"product_id": "BTC-USD", "side": side, "order_configuration": map[string]any{cfg: member}})
	o := outcome{path: "/api/v3/brokerage/orders", body: string(b)}
	sell := side == "SELL"
	switch {
	case bs == "" && qs == "":
		o.rejects = true
		return o
	case bs == "0" || qs == "0":
		o.rejects = true
		return o
	}
	either := func(base decimal.Decimal) decimal.Decimal {
		switch {
		case bs == "":
			return d(qs)
		case qs == "":
			return base
		}
		return decimal.Max(base, d(qs))
	}
	switch cfg {
	case "market_market_ioc":
		o.fill = either(at(orZero(bs), true, ref))
	case "limit_limit_gtc":
		if lp == "" {
			o.rejects = true
			break
		}
		o.fill = either(at(orZero(bs), sell, ref, lp))
	default:
		if lp == "" || sp == "" {
			o.rejects = true
			break
		}
		if sell {
			o.fill = either(at(orZero(bs), true, ref, lp, sp))
		} else {
			o.fill = either(at(orZero(bs), false, ref, lp))
		}
	}
	return o
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// propertyVenue is one venue under test.
type propertyVenue struct {
	name, instrument string
	norm             venue.Normalizer
	model            func(*picker, decimal.Decimal) outcome
}

func propertyVenues(t testing.TB) []propertyVenue {
	t.Helper()
	creds := func(context.Context, func(venue.Credential) error) error {
		return fmt.Errorf("no credentials in this test")
	}
	bn, err1 := binance.New(binance.Options{Credentials: creds})
	kr, err2 := kraken.New(kraken.Options{Credentials: creds})
	ok, err3 := okx.New(okx.Options{Credentials: creds})
	by, err4 := bybit.New(bybit.Options{Credentials: creds})
	cb, err5 := coinbase.New(coinbase.Options{Credentials: creds})
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return []propertyVenue{
		{"binance", "BTCUSDT", bn, binanceModel},
		{"kraken", "XBTUSD", kr, krakenModel},
		{"okx", "BTC-USDT", ok, okxModel},
		{"bybit", "BTCUSDT", by, bybitModel},
		{"coinbase", "BTC-USD", cb, coinbaseModel},
	}
}

// propertyEngine limits notional (so that it is computed and checked) far
// above anything the models fill.
func propertyEngine(t testing.TB) *policy.Engine {
	t.Helper()
	e := policy.New(policy.Options{})
	e.Load(compile(t, "policies:\n  p:\n    max_notional: [\"1000000000000000 USDT\", \"1000000000000000 USD\"]\n"))
	return e
}

// checkNotional runs one drawn order through Normalize and Evaluate and
// reports a property violation.
func checkNotional(e *policy.Engine, v propertyVenue, p *picker) error {
	ref := d(p.of(refs...))
	o := v.model(p, ref)
	req := &venue.Request{Method: "POST", Path: o.path, RawQuery: o.query, Body: []byte(o.body)}
	ord, err := v.norm.Normalize(req)
	in := &policy.Input{Time: monday, TokenID: "tok_p", Policy: "p", Venue: v.name, Operation: venue.OpOrderPlace,
		Method: "POST", Path: o.path, RawQuery: o.query, Order: ord, OrderErr: err,
		Prices: policy.StaticPrices{strings.ToUpper(v.instrument): ref}}
	dec := e.Evaluate(context.Background(), in)
	if !dec.Allow || o.rejects {
		return nil
	}
	if o.unbounded {
		return fmt.Errorf("%s %s?%s %s at %s: allowed (%s) an order whose fill keystile cannot bound", v.name, o.path, o.query, o.body, ref, dec.Notional)
	}
	amount, _, _ := strings.Cut(dec.Notional, " ")
	charged, perr := decimal.NewFromString(amount)
	if perr != nil || charged.LessThan(o.fill) {
		return fmt.Errorf("%s %s?%s %s at reference %s: charged %q, the venue fills up to %s", v.name, o.path, o.query, o.body, ref, dec.Notional, o.fill)
	}
	return nil
}

// TestNotionalCoversFill checks the property on 4000 drawn orders per
// venue (a fixed seed, so a failure reproduces) and on the issue's own
// examples.
func TestNotionalCoversFill(t *testing.T) {
	e := propertyEngine(t)
	for _, v := range propertyVenues(t) {
		t.Run(v.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(13, uint64(len(v.name))))
			for i := range 4000 {
				if err := checkNotional(e, v, &picker{rng: rng}); err != nil {
					t.Fatalf("draw %d: %v", i, err)
				}
			}
		})
	}
}

// FuzzNotionalCoversFill is the same property with the fuzzer choosing
// every parameter (the first byte picks the venue).
func FuzzNotionalCoversFill(f *testing.F) {
	e := propertyEngine(f)
	vs := propertyVenues(f)
	for i := range vs {
		for _, seed := range []uint64{1, 2, 3, 4} {
			b := binary.LittleEndian.AppendUint64([]byte{byte(i)}, seed*0x9e3779b97f4a7c15)
			f.Add(append(b, byte(seed), 7, 3, 1))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		v := vs[int(data[0])%len(vs)]
		if err := checkNotional(e, v, &picker{data: data[1:]}); err != nil {
			t.Fatal(err)
		}
	})
}
