package killswitch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
)

// Ledger keeps the amounts a loss guard counts, by key and time, and
// sums a key's amounts since a time. The SQLite store keeps them in the
// policy budgets' tables (entries and running totals); implementations
// are safe for concurrent use.
type Ledger interface {
	Add(ctx context.Context, key string, at time.Time, amount decimal.Decimal) error
	Sum(ctx context.Context, key string, since time.Time) (decimal.Decimal, error)
}

// LossRule is one compiled loss guard (config.LossGuard).
type LossRule struct {
	Name  string
	Scope string // "token" or "account"
	// Window is the rolling window; 0 means the current UTC calendar day.
	Window time.Duration
	// MaxNet caps buys minus sells, MaxNotional buys plus sells, per quote
	// currency; a currency with no cap is not counted by the rule.
	MaxNet      map[string]decimal.Decimal
	MaxNotional map[string]decimal.Decimal
	// Policies restricts the rule to tokens of these policies ("default":
	// no policy); empty means every token.
	Policies []string
}

// since is the start of the rule's window at now.
func (r LossRule) since(now time.Time) time.Time {
	if r.Window == 0 {
		u := now.UTC()
		return time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
	}
	return now.Add(-r.Window)
}

func (r LossRule) windowText() string {
	if r.Window == 0 {
		return "the UTC day"
	}
	return r.Window.String()
}

// LossGuardOptions configure NewLossGuard.
type LossGuardOptions struct {
	Switch *Switch // required
	Ledger Ledger  // required
	Store  Store   // required: when a trip was last cleared (windows restart then)
	Rules  []LossRule
	// Account maps a venue id to its account (credential name); if nil,
	// the venue id. Venues maps an account to its venues (what an
	// account-scoped trip engages); if nil, the venue of the order.
	Account func(venue string) string
	Venues  func(account string) []string
	// Policy returns a token's policy name ("" for none); if nil, rules
	// restricted to policies never apply.
	Policy func(tok token.ID) string
	// Queue is the number of events waiting to be counted before new ones
	// are dropped (and counted in Stats); if 0, 4096.
	Queue  int
	Logger *slog.Logger
	Now    func() time.Time
}

// LossGuard counts accepted order placements against LossRules and
// engages the switch when one is exceeded. It is an audit.Sink: Record
// queues the gateway's events without blocking (a full queue drops them,
// counted); Run counts them off the request path.
type LossGuard struct {
	o     LossGuardOptions
	log   *slog.Logger
	now   func() time.Time
	queue chan audit.Event

	counted, dropped, unpriced, tripped, failed atomic.Uint64
	idle                                        atomic.Int64 // events queued minus processed
}

// NewLossGuard builds a loss guard.
func NewLossGuard(o LossGuardOptions) (*LossGuard, error) {
	if o.Switch == nil || o.Ledger == nil || o.Store == nil {
		return nil, fmt.Errorf("%w: loss guard needs a switch, a ledger and a store", ErrInvalid)
	}
	g := &LossGuard{o: o, log: o.Logger, now: o.Now}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	n := o.Queue
	if n <= 0 {
		n = 4096
	}
	g.queue = make(chan audit.Event, n)
	return g, nil
}

// LossGuardStats are counters since start.
type LossGuardStats struct {
	Counted  uint64 // orders counted
	Dropped  uint64 // events dropped on a full queue
	Unpriced uint64 // accepted orders whose notional could not be told
	Tripped  uint64 // trips engaged
	Failed   uint64 // ledger or store errors
	Pending  int64  // events queued, not yet processed
}

// Stats returns the counters.
func (g *LossGuard) Stats() LossGuardStats {
	return LossGuardStats{Counted: g.counted.Load(), Dropped: g.dropped.Load(), Unpriced: g.unpriced.Load(),
		Tripped: g.tripped.Load(), Failed: g.failed.Load(), Pending: g.idle.Load()}
}

// Record implements audit.Sink. It never blocks.
func (g *LossGuard) Record(_ context.Context, e audit.Event) {
	if len(g.o.Rules) == 0 || !countable(e) {
		return
	}
	g.idle.Add(1)
	select {
	case g.queue <- e:
	default:
		g.idle.Add(-1)
		if n := g.dropped.Add(1); n&(n-1) == 0 { // log at powers of two
			g.log.Error("killswitch: loss guard queue full; orders not counted", "dropped", n)
		}
	}
}

// Run counts queued events until ctx ends.
func (g *LossGuard) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-g.queue:
			g.process(ctx, e)
			g.idle.Add(-1)
		}
	}
}

// countable reports whether e is an order placement the venue accepted:
// allowed, with the venue's order id (read from a successful answer, or
// found by an unknown outcome's lookup). Replays carry none.
func countable(e audit.Event) bool {
	return e.Operation == "order.place" && e.Decision == audit.Allow && e.TokenID != "" && e.VenueOrderID != "" &&
		e.Status >= 200 && e.Status < 300
}

// notionalOf reads an event's side and notional: the policy's computed
// "60 USDT", else the bot's quote amount, else quantity × price, with the
// instrument's quote currency.
func notionalOf(e audit.Event) (side string, amount decimal.Decimal, currency string, ok bool) {
	side = strings.ToLower(e.Side)
	if side != "buy" && side != "sell" {
		return "", decimal.Decimal{}, "", false
	}
	if a, err := policy.ParseAmount(e.Notional); err == nil {
		return side, a.Value, a.Currency, true
	}
	cur, curOK := policy.QuoteCurrency(e.Instrument)
	if !curOK {
		return "", decimal.Decimal{}, "", false
	}
	if v, err := decimal.NewFromString(e.Notional); err == nil && e.Notional != "" && v.IsPositive() {
		return side, v, cur, true
	}
	q, qerr := decimal.NewFromString(e.Quantity)
	p, perr := decimal.NewFromString(e.Price)
	if qerr != nil || perr != nil || !q.IsPositive() || !p.IsPositive() {
		return "", decimal.Decimal{}, "", false
	}
	return side, q.Mul(p), cur, true
}

// process counts one accepted order and trips what it takes over a cap.
func (g *LossGuard) process(ctx context.Context, e audit.Event) {
	side, amount, cur, ok := notionalOf(e)
	if !ok {
		g.unpriced.Add(1)
		return
	}
	tok := token.ID(e.TokenID)
	pol := ""
	if g.o.Policy != nil {
		pol = g.o.Policy(tok)
	}
	if pol == "" {
		pol = "default"
	}
	now := g.now()
	counted := false
	for _, r := range g.o.Rules {
		if len(r.Policies) > 0 && !slices.Contains(r.Policies, pol) {
			continue
		}
		lnet, hasNet := r.MaxNet[cur]
		lnot, hasNot := r.MaxNotional[cur]
		if !hasNet && !hasNot {
			continue
		}
		subject, scope, targets := "token:"+string(tok), ScopeToken, []string{string(tok)}
		if r.Scope == "account" {
			acct := e.Venue
			if g.o.Account != nil {
				acct = g.o.Account(e.Venue)
			}
			subject, scope, targets = "account:"+acct, ScopeVenue, []string{e.Venue}
			if g.o.Venues != nil {
				if vs := g.o.Venues(acct); len(vs) > 0 {
					targets = vs
				}
			}
		}
		key := "lossguard/" + r.Name + "/" + subject + "/" + cur
		if err := g.o.Ledger.Add(ctx, key+"/"+side, now, amount); err != nil {
			g.failed.Add(1)
			g.log.Error("killswitch: loss guard: count order", "guard", r.Name, "err", err)
			continue
		}
		counted = true
		st := g.o.Switch.state.Load()
		if !slices.ContainsFunc(targets, func(t string) bool {
			if scope == ScopeToken {
				return !st.all && !st.tokens[token.ID(t)]
			}
			return !st.coversVenue(t)
		}) {
			continue // already tripped
		}
		since := r.since(now)
		for _, t := range targets {
			last, err := g.o.Store.LastClear(ctx, scope, t)
			if err != nil {
				g.failed.Add(1)
				g.log.Error("killswitch: loss guard: read last clear", "err", err)
				continue
			}
			if last.After(since) {
				since = last // a cleared trip restarts the window
			}
		}
		buys, err1 := g.o.Ledger.Sum(ctx, key+"/buy", since)
		sells, err2 := g.o.Ledger.Sum(ctx, key+"/sell", since)
		if err1 != nil || err2 != nil {
			g.failed.Add(1)
			g.log.Error("killswitch: loss guard: sum", "guard", r.Name, "err", fmt.Sprint(err1, err2))
			continue
		}
		net, gross := buys.Sub(sells), buys.Add(sells)
		var why string
		switch {
		case hasNet && net.GreaterThan(lnet):
			why = fmt.Sprintf("net spend %s %s over %s exceeds %s %s", net, cur, r.windowText(), lnet, cur)
		case hasNot && gross.GreaterThan(lnot):
			why = fmt.Sprintf("notional %s %s over %s exceeds %s %s", gross, cur, r.windowText(), lnot, cur)
		default:
			continue
		}
		detail := map[string]any{"guard": r.Name, "guard_scope": r.Scope, "currency": cur, "net_spend": net.String(),
			"notional": gross.String(), "since": since.UTC().Format(time.RFC3339Nano)}
		if hasNet {
			detail["max_net_spend"] = lnet.String()
		}
		if hasNot {
			detail["max_notional"] = lnot.String()
		}
		for _, t := range targets {
			en := Engagement{Scope: scope, Target: t, Rule: RuleLossGuard + "." + r.Name, Actor: "killswitch.loss_guard",
				Reason: why, Token: tok, RequestID: e.RequestID, Detail: detail}
			if _, err := g.o.Switch.Engage(ctx, en); err != nil {
				g.failed.Add(1)
				g.log.Error("killswitch: loss guard: engage", "guard", r.Name, "err", err)
				continue
			}
			g.tripped.Add(1)
		}
		g.log.Warn("killswitch: loss guard tripped", "guard", r.Name, "reason", why, "token", tok, "venue", e.Venue)
	}
	if counted {
		g.counted.Add(1)
	}
}

var _ audit.Sink = (*LossGuard)(nil)
