package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/venue"
)

// PriceSource gives a venue's reference (last traded) price of an
// instrument, in the instrument's quote currency. Implementations are safe
// for concurrent use.
type PriceSource interface {
	ReferencePrice(ctx context.Context, instrument string) (decimal.Decimal, error)
}

// Options configure an Engine. The zero value is usable: no budget store
// (a policy with budgets then denies every order it applies to), the wall
// clock and a discarding logger.
type Options struct {
	// Budgets persists budget reservations. If nil, budgets deny.
	Budgets BudgetStore
	// Now is the clock used when Input.Time is zero. If nil, time.Now.
	Now func() time.Time
	// Logger receives reload and budget-store messages. If nil, nothing
	// is logged.
	Logger *slog.Logger
	// Rates, if non-nil, holds the rate buckets outside this process,
	// shared by every replica. If nil, each process has its own.
	Rates SharedRates
	// RatesFallback applies while Rates fails; the zero value fails
	// closed.
	RatesFallback RatesFallback
}

// Engine evaluates requests against the loaded Set. It is safe for
// concurrent use.
type Engine struct {
	set       atomic.Pointer[Set]
	budgets   BudgetStore
	now       func() time.Time
	log       *slog.Logger
	rates     *limiters
	shared    SharedRates
	fallback  RatesFallback
	ratesDown atomic.Bool // the last call to shared failed
	lastPrune atomic.Int64
}

// New returns an Engine with no Set loaded (the built-in default applies).
func New(o Options) *Engine {
	e := &Engine{budgets: o.Budgets, now: o.Now, log: o.Logger, rates: newLimiters(),
		shared: o.Rates, fallback: o.RatesFallback}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	return e
}

// Load makes s the Set future evaluations use (an atomic swap; requests
// being evaluated finish with the Set they started with). A nil s leaves
// only the built-in default.
func (e *Engine) Load(s *Set) {
	if s == nil {
		s = &Set{}
	}
	e.set.Store(s)
}

// Set returns the loaded Set (nil if none was loaded).
func (e *Engine) Set() *Set { return e.set.Load() }

// Input is one request, as the gateway knows it after authentication and
// classification, before signing.
type Input struct {
	Time      time.Time // the request's time; zero means Options.Now()
	TokenID   string    // the token's public id
	Policy    string    // the token's policy name ("" = default)
	Venue     string    // venue id
	Account   string    // the venue credential's name (account-scope budgets and rates)
	Operation string    // venue operation name
	Method    string
	Path      string // path below the venue prefix
	RawQuery  string
	Order     *venue.Order // order.place only; nil if not readable
	OrderErr  error        // the venue's normalizer failed
	Prices    PriceSource  // reference prices; may be nil
	DryRun    bool         // reserve nothing, consume no rate tokens
	// DeferBudget: the caller reserves the budget itself
	// (Decision.Budget), in one write with its other durable state (the
	// ledger); Evaluate then reserves nothing and Decision.Hold is nil.
	DeferBudget bool
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allow bool
	// Rule names the rule that denied, e.g. "policy.scalper.max_notional";
	// "" when allowed.
	Rule string
	// Reason is internal detail for the audit log; never a secret.
	Reason string
	// Status is the HTTP status of a denial: 403, or 429 for rate limits
	// (then RetryAfter > 0). 0 when allowed.
	Status     int
	RetryAfter time.Duration
	// Notional is the order's computed notional, e.g. "60 USDT" ("" if
	// none was computed).
	Notional string
	// Hold holds the budget reserved for the request (nil if none). The
	// caller must Release or Keep it.
	Hold *Hold
	// Budget is the reservation the caller must make before forwarding,
	// with Input.DeferBudget (nil if none).
	Budget *Reservation
}

// Reservation is a budget an allowed order must reserve before it is
// forwarded (Input.DeferBudget): Amount at At against every claim, all or
// none (BudgetStore.Reserve semantics, made by the caller's store).
type Reservation struct {
	At     time.Time
	Amount decimal.Decimal
	Claims []Claim

	ev    evaluation // names the rules
	names []string   // budget name per claim
}

// Hold is the hold of the entries ids the caller's store reserved for r,
// to Release or Keep like Decision.Hold.
func (r *Reservation) Hold(ids []int64) *Hold {
	r.ev.e.maybePrune(context.Background(), r.At)
	return &Hold{store: r.ev.e.budgets, ids: ids}
}

// Deny is the denial for a reservation of r that failed: err is an
// *ExceededError (the budget rule that would be exceeded) or the store's
// failure.
func (r *Reservation) Deny(err error) *Decision {
	return r.ev.budgetDenial(err, r.names)
}

// Rule ids that do not belong to one policy.
const (
	RuleUnknownPolicy = "policy.unknown"
)

// Evaluate decides whether the request in may go out. It never blocks for
// long: the only I/O is the reference price (bounded by a 2 s timeout) and
// the budget store.
func (e *Engine) Evaluate(ctx context.Context, in *Input) *Decision {
	if in.Time.IsZero() {
		c := *in
		c.Time = e.now()
		in = &c
	}
	p, d := e.lookup(in.Policy)
	if d != nil {
		return d
	}
	ev := evaluation{e: e, p: p, in: in}
	return ev.run(ctx)
}

func (e *Engine) lookup(name string) (*compiled, *Decision) {
	s := e.set.Load()
	n := name
	if n == "" {
		n = DefaultName
	}
	if s != nil {
		if p, ok := s.policies[n]; ok {
			return p, nil
		}
	}
	if n == DefaultName {
		return builtinDefault(), nil
	}
	return nil, &Decision{Rule: RuleUnknownPolicy, Status: http.StatusForbidden,
		Reason: fmt.Sprintf("the token's policy %q is not defined", name)}
}

// evaluation is the state of one Evaluate call.
type evaluation struct {
	e  *Engine
	p  *compiled
	in *Input

	view     *orderView
	notional decimal.Decimal
	hasNot   bool
	currency string
}

func (ev *evaluation) deny(rule, format string, args ...any) *Decision {
	d := &Decision{Rule: "policy." + ev.p.name + "." + rule, Status: http.StatusForbidden, Reason: fmt.Sprintf(format, args...)}
	d.Notional = ev.notionalText()
	return d
}

func (ev *evaluation) notionalText() string {
	if !ev.hasNot || ev.currency == "" {
		return ""
	}
	return ev.notional.String() + " " + ev.currency
}

func (ev *evaluation) run(ctx context.Context) *Decision {
	p, in := ev.p, ev.in
	if p.venues != nil && !p.venues[in.Venue] {
		return ev.deny("venue", "venue %q is not in the policy's venues", in.Venue)
	}
	if !p.allowsOp(in.Operation) {
		if dangerous(in.Operation) {
			return ev.deny("operation", "operation %q must be named literally in operations", in.Operation)
		}
		return ev.deny("operation", "operation %q is not in the policy's operations", in.Operation)
	}
	if len(p.hours) > 0 {
		lt := in.Time.In(p.loc)
		if !slices.ContainsFunc(p.hours, func(w window) bool { return w.contains(lt) }) {
			return ev.deny("hours", "%s is outside the allowed hours", lt.Format("Mon 15:04 MST"))
		}
	}
	if in.Operation == venue.OpOrderPlace && in.Order != nil && in.OrderErr == nil {
		ev.view = &orderView{Instrument: in.Order.Instrument, Side: in.Order.Side, Type: in.Order.Type,
			Quantity: in.Order.Quantity, Price: in.Order.Price, TriggerPrice: in.Order.TriggerPrice, Notional: in.Order.Notional,
			ClientOrderID: in.Order.ClientOrderID}
	}
	if in.Operation == venue.OpOrderPlace && p.orderRules {
		if d := ev.orderRules(ctx); d != nil {
			return d
		}
	}
	if p.expr != nil {
		ok, err := evalExpr(p.expr, celVars(in, ev.view))
		if err != nil {
			return ev.deny("expr", "expression error: %v", err)
		}
		if !ok {
			return ev.deny("expr", "expression is false")
		}
	}
	if len(p.rates) > 0 {
		if d := ev.rate(ctx); d != nil {
			return d
		}
	}
	dec := &Decision{Allow: true, Notional: ev.notionalText()}
	if in.Operation == venue.OpOrderPlace && len(p.budgets) > 0 {
		h, r, d := ev.reserve(ctx)
		if d != nil {
			return d
		}
		dec.Hold, dec.Budget = h, r
	}
	return dec
}

func (p *compiled) allowsOp(op string) bool {
	if op == "" {
		return false
	}
	if dangerous(op) {
		return slices.Contains(p.ops, op)
	}
	if p.ops == nil {
		return true
	}
	for _, g := range p.ops {
		if ok, _ := path.Match(g, op); ok {
			return true
		}
	}
	return false
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// orderRules checks an order.place against the order rules and computes
// its notional and currency.
func (ev *evaluation) orderRules(ctx context.Context) *Decision {
	p, in, o := ev.p, ev.in, ev.view
	if in.OrderErr != nil {
		return ev.deny("unreadable_order", "the venue could not read the order: %v", in.OrderErr)
	}
	if o == nil {
		return ev.deny("unreadable_order", "no order fields could be read from the request")
	}
	inst := strings.ToUpper(o.Instrument)
	if inst == "" {
		return ev.deny("unreadable_order", "the order names no instrument")
	}
	if matchAny(p.instDeny, inst) {
		return ev.deny("instrument", "instrument %s is denied", inst)
	}
	if len(p.instAllow) > 0 && !matchAny(p.instAllow, inst) {
		return ev.deny("instrument", "instrument %s is not allowed", inst)
	}
	if p.sides != nil && !p.sides[strings.ToLower(o.Side)] {
		return ev.deny("side", "side %q is not allowed", o.Side)
	}
	if p.types != nil && !p.types[strings.ToLower(o.Type)] {
		return ev.deny("order_type", "order type %q is not allowed", o.Type)
	}
	var qty, price, given decimal.Decimal
	hasQty, hasPrice, hasGiven := o.Quantity != "", o.Price != "", o.Notional != ""
	var err error
	for _, f := range []struct {
		has  bool
		s    string
		into *decimal.Decimal
		name string
	}{{hasQty, o.Quantity, &qty, "quantity"}, {hasPrice, o.Price, &price, "price"}, {hasGiven, o.Notional, &given, "quote amount"}} {
		if f.has {
			if *f.into, err = parsePlain(f.s); err != nil {
				return ev.deny("unreadable_order", "order %s: %v", f.name, err)
			}
		}
	}
	// Every price the order may fill at: its limit, its trigger and the
	// prices of its other legs.
	var prices []decimal.Decimal
	if hasPrice {
		prices = append(prices, price)
	}
	for _, ps := range append([]string{in.Order.TriggerPrice}, in.Order.LegPrices...) {
		if ps == "" {
			continue
		}
		v, err := parsePlain(ps)
		if err != nil {
			return ev.deny("unreadable_order", "order trigger or leg price: %v", err)
		}
		prices = append(prices, v)
	}
	zero := hasQty && qty.IsZero() || hasGiven && given.IsZero()
	if p.maxQty != nil {
		switch {
		case in.Order.Contracts:
			return ev.deny("max_quantity", "the order's quantity counts contracts of a size keystile does not know")
		case !hasQty:
			return ev.deny("max_quantity", "the order has no base quantity to check against %s", p.maxQty)
		case zero:
			return ev.deny("max_quantity", "a zero quantity closes a whole position on some venues: its size is unknown")
		case qty.GreaterThan(*p.maxQty):
			return ev.deny("max_quantity", "quantity %s > max %s", qty, p.maxQty)
		}
	}
	cur, curOK := QuoteCurrency(inst)
	if curOK {
		ev.currency = cur
	}
	// An order that executes at the market (or has no limit price) fills
	// at the market's price whatever price field the bot sent, and a sell
	// fills at the market when its limit is below it: both are judged at
	// the reference price as well. The band needs it for limit prices.
	atMarket := in.Order.Market || !hasPrice
	needBand := p.band != nil && hasPrice
	qtyRef := p.needsNotional && hasQty && !in.Order.Contracts && (atMarket || o.Side != "buy")
	var ref decimal.Decimal
	var refErr error
	if needBand || qtyRef {
		ref, refErr = ev.referencePrice(ctx, o.Instrument)
		if refErr == nil && !ref.IsPositive() {
			refErr = fmt.Errorf("reference price %s is not positive", ref)
		}
	}
	why := ""
	switch {
	case in.Order.Contracts && !hasGiven:
		why = "its quantity counts contracts of a size keystile does not know"
	case zero:
		why = "a zero size closes a whole position on some venues"
	case hasQty && qtyRef && refErr != nil:
		why = "no reference price: " + refErr.Error()
	case hasQty && !in.Order.Contracts:
		if qtyRef {
			prices = append(prices, ref)
		}
		if len(prices) == 0 {
			why = "no price and no reference price"
			break
		}
		worst := prices[0]
		for _, v := range prices[1:] {
			worst = decimal.Max(worst, v)
		}
		ev.notional, ev.hasNot = qty.Mul(worst), true
		if hasGiven {
			// The venue may read either size: the larger charge applies.
			ev.notional = decimal.Max(ev.notional, given)
		}
	case hasGiven:
		ev.notional, ev.hasNot = given, true
	default:
		why = "no quantity × price, quote amount or reference price"
	}
	if ev.hasNot {
		o.Notional, o.Currency = ev.notional.String(), ev.currency
	}
	if p.needsNotional {
		if !ev.hasNot {
			return ev.deny("notional_unknown", "cannot compute the order's notional (%s)", why)
		}
		if !curOK {
			return ev.deny("currency", "cannot tell the quote currency of %s", inst)
		}
		if p.maxNotional != nil {
			lim, ok := p.maxNotional[cur]
			if !ok {
				return ev.deny("currency", "no max_notional in %s", cur)
			}
			if ev.notional.GreaterThan(lim) {
				return ev.deny("max_notional", "notional %s %s > max %s %s", ev.notional, cur, lim, cur)
			}
		}
		if len(p.budgets) > 0 && !slices.ContainsFunc(p.budgets, func(b budgetRule) bool { return b.limit.Currency == cur }) {
			return ev.deny("currency", "no budget in %s", cur)
		}
	}
	if needBand {
		if refErr != nil {
			return ev.deny("price_band", "no reference price: %v", refErr)
		}
		dist := price.Sub(ref).Abs().Div(ref)
		if dist.GreaterThan(*p.band) {
			return ev.deny("price_band", "price %s is %s%% from the reference %s (band %s%%)", price,
				dist.Mul(decimal.NewFromInt(100)).StringFixed(2), ref, p.band.Mul(decimal.NewFromInt(100)))
		}
	}
	return nil
}

// errNoPriceSource is reported when a reference price is needed but the
// venue has none.
var errNoPriceSource = errors.New("the venue has no reference price source")

func (ev *evaluation) referencePrice(ctx context.Context, instrument string) (decimal.Decimal, error) {
	if ev.in.Prices == nil {
		return decimal.Decimal{}, errNoPriceSource
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return ev.in.Prices.ReferencePrice(ctx, instrument)
}

// scopeID is the budget/rate subject of scope.
func (ev *evaluation) scopeID(scope string) string {
	if scope == ScopeAccount {
		if ev.in.Account != "" {
			return "account:" + ev.in.Account
		}
		return "account:venue:" + ev.in.Venue
	}
	return "token:" + ev.in.TokenID
}

// claims builds the budget claims of the order's currency.
func (ev *evaluation) claims() ([]Claim, []string) {
	var cs []Claim
	var names []string
	for _, b := range ev.p.budgets {
		if b.limit.Currency != ev.currency {
			continue
		}
		cs = append(cs, budgetClaim(ev.p, b, ev.scopeID(b.scope), ev.in.Time))
		names = append(names, b.name)
	}
	return cs, names
}

// budgetClaim is budget b of policy p for subject (a scope id, e.g.
// "token:tok_abc") at time at: its key (which names the window) and the
// window's start.
func budgetClaim(p *compiled, b budgetRule, subject string, at time.Time) Claim {
	key := subject + "/" + b.name + "/" + b.limit.Currency + "/"
	var since time.Time
	if b.day {
		lt := at.In(p.loc)
		y, m, d := lt.Date()
		since = time.Date(y, m, d, 0, 0, 0, 0, p.loc)
		key += "day:" + lt.Format("2006-01-02") + "@" + p.loc.String()
	} else {
		since = at.Add(-b.window)
		key += "rolling:" + b.window.String()
	}
	return Claim{Key: key, Since: since, Limit: b.limit.Value}
}

// reserve reserves the order's budget (a Hold), or with DeferBudget
// describes the reservation for the caller to make.
func (ev *evaluation) reserve(ctx context.Context) (*Hold, *Reservation, *Decision) {
	cs, names := ev.claims()
	if len(cs) == 0 {
		// orderRules denied every currency without a budget; reaching here
		// means a bug: fail closed.
		return nil, nil, ev.deny("currency", "no budget in %q", ev.currency)
	}
	st := ev.e.budgets
	if st == nil {
		return nil, nil, ev.deny("budget."+names[0], "no budget store configured")
	}
	if ev.in.DeferBudget && !ev.in.DryRun {
		return nil, &Reservation{At: ev.in.Time, Amount: ev.notional, Claims: cs, ev: *ev, names: names}, nil
	}
	var ids []int64
	var err error
	if ev.in.DryRun {
		err = st.Check(ctx, ev.in.Time, ev.notional, cs)
	} else {
		ids, err = st.Reserve(ctx, ev.in.Time, ev.notional, cs)
	}
	if err != nil {
		return nil, nil, ev.budgetDenial(err, names)
	}
	if ev.in.DryRun {
		return nil, nil, nil
	}
	ev.e.maybePrune(ctx, ev.in.Time)
	return &Hold{store: st, ids: ids}, nil, nil
}

// budgetDenial is the denial for a failed reservation against claims
// named names.
func (ev *evaluation) budgetDenial(err error, names []string) *Decision {
	var ex *ExceededError
	if errors.As(err, &ex) && ex.Index >= 0 && ex.Index < len(names) {
		return ev.deny("budget."+names[ex.Index], "%s %s used + %s > limit %s %s in window",
			ex.Used, ev.currency, ex.Amount, ex.Limit, ev.currency)
	}
	ev.e.log.Error("policy: budget store", "policy", ev.p.name, "err", err)
	return ev.deny("budget."+names[0], "budget store failed: %v", err)
}

// pruneEvery is how often old budget entries are deleted.
const pruneEvery = time.Hour

func (e *Engine) maybePrune(ctx context.Context, now time.Time) {
	s := e.set.Load()
	if s == nil || s.keep == 0 || e.budgets == nil {
		return
	}
	last := e.lastPrune.Load()
	if now.UnixNano()-last < int64(pruneEvery) || !e.lastPrune.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	// Keep a day's slack beyond the longest window: a policy reload may
	// lengthen it.
	if err := e.budgets.Prune(ctx, now.Add(-s.keep-24*time.Hour)); err != nil {
		e.log.Warn("policy: prune budget entries", "err", err)
	}
}
