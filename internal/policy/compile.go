package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/shopspring/decimal"
	"golang.org/x/time/rate"

	"github.com/keystile/keystile/internal/config"
)

// DefaultName is the policy used by tokens that name none: policies.default
// if the file defines it, else the built-in default (every operation but
// the dangerous ones, no limits).
const DefaultName = "default"

// Scopes of budgets and rate limits.
const (
	ScopeToken   = "token"
	ScopeAccount = "account"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// maxRollingWindow bounds rolling budget windows (and so what the store
// must keep).
const maxRollingWindow = 31 * 24 * time.Hour

// Set is a compiled, immutable set of policies. It is safe for concurrent
// use; Engine.Load swaps whole Sets.
type Set struct {
	policies map[string]*compiled
	// keep is how far back budget entries are still needed.
	keep time.Duration
}

// Names returns the names of the policies in s, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.policies))
	for n := range s.policies {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// compiled is one policy, ready to evaluate.
type compiled struct {
	name   string
	venues map[string]bool // nil: any
	ops    []string        // globs; nil: every non-dangerous op

	instAllow, instDeny []string // upper-case globs
	sides, types        map[string]bool
	maxQty              *decimal.Decimal
	maxNotional         map[string]decimal.Decimal // currency -> limit
	band                *decimal.Decimal           // fraction
	loc                 *time.Location
	hours               []window
	budgets             []budgetRule
	rates               []rateRule
	expr                cel.Program

	orderRules    bool // any rule that reads the order
	needsNotional bool // max_notional or budgets
}

type budgetRule struct {
	name   string
	scope  string
	day    bool
	window time.Duration
	limit  Amount
}

type rateRule struct {
	scope string
	spec  string // as written, part of the bucket key
	limit rate.Limit
	burst int
	n     int           // limit as written: n per per
	per   time.Duration // (for SharedRates)
}

func builtinDefault() *compiled {
	return &compiled{name: DefaultName, loc: time.UTC}
}

// dangerous reports whether op may only be enabled by naming it: wallet.*
// (withdrawals, transfers) and apikey.* (key management).
func dangerous(op string) bool {
	first, _, _ := strings.Cut(op, ".")
	return first == "wallet" || first == "apikey"
}

// Compile compiles cfg.Policies. Every problem is a *config.Error naming
// the file, line, column and key (see config.Config.Locate); all of them
// are returned, joined. A nil cfg or one without policies gives an empty
// Set (the built-in default applies to every token).
func Compile(cfg *config.Config) (*Set, error) {
	s := &Set{policies: map[string]*compiled{}}
	if cfg == nil || len(cfg.Policies) == 0 {
		return s, nil
	}
	c := &compiler{cfg: cfg}
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	c.env = env
	names := make([]string, 0, len(cfg.Policies))
	for n := range cfg.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if p := c.policy(n, cfg.Policies[n]); p != nil {
			s.policies[n] = p
			for _, b := range p.budgets {
				if b.window > s.keep {
					s.keep = b.window
				}
			}
		}
	}
	if len(c.errs) > 0 {
		sort.SliceStable(c.errs, func(i, j int) bool {
			a, b := c.errs[i], c.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		errs := make([]error, len(c.errs))
		for i, e := range c.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return s, nil
}

type compiler struct {
	cfg  *config.Config
	env  *cel.Env
	errs []*config.Error
}

func (c *compiler) errorf(key, format string, args ...any) {
	file, line, col := c.cfg.Locate(key)
	c.errs = append(c.errs, &config.Error{File: file, Line: line, Column: col, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func validGlob(g string) bool {
	_, err := path.Match(g, "")
	return g != "" && err == nil
}

func (c *compiler) policy(name string, p config.Policy) *compiled {
	k := "policies." + name
	nerr := len(c.errs)
	if !nameRE.MatchString(name) {
		c.errorf(k, "policy name must match [a-z0-9][a-z0-9_-]{0,31}")
	}
	out := &compiled{name: name, loc: time.UTC}

	if len(p.Venues) > 0 {
		out.venues = map[string]bool{}
	}
	for i, v := range p.Venues {
		key := fmt.Sprintf("%s.venues[%d]", k, i)
		if _, ok := c.cfg.Venues[v]; !ok {
			c.errorf(key, "unknown venue %q (not in venues:)", v)
		}
		out.venues[v] = true
	}
	for i, op := range p.Operations {
		if !validGlob(op) {
			c.errorf(fmt.Sprintf("%s.operations[%d]", k, i), "invalid operation pattern %q", op)
		}
	}
	out.ops = slices.Clone(p.Operations)
	if len(p.Operations) == 0 {
		out.ops = nil
	}

	globs := func(key string, in []string) []string {
		var res []string
		for i, g := range in {
			if !validGlob(g) {
				c.errorf(fmt.Sprintf("%s[%d]", key, i), "invalid instrument pattern %q", g)
			}
			res = append(res, strings.ToUpper(g))
		}
		return res
	}
	out.instAllow = globs(k+".instruments.allow", p.Instruments.Allow)
	out.instDeny = globs(k+".instruments.deny", p.Instruments.Deny)

	if len(p.Sides) > 0 {
		out.sides = map[string]bool{}
	}
	for i, sd := range p.Sides {
		sd = strings.ToLower(sd)
		if sd != "buy" && sd != "sell" {
			c.errorf(fmt.Sprintf("%s.sides[%d]", k, i), "must be buy or sell, got %q", sd)
		}
		out.sides[sd] = true
	}
	if len(p.OrderTypes) > 0 {
		out.types = map[string]bool{}
	}
	for i, t := range p.OrderTypes {
		t = strings.ToLower(t)
		if !orderTypeRE.MatchString(t) {
			c.errorf(fmt.Sprintf("%s.order_types[%d]", k, i), "invalid order type %q (e.g. limit, market)", t)
		}
		out.types[t] = true
	}
	if p.MaxQuantity != "" {
		q, err := parsePlain(p.MaxQuantity)
		switch {
		case err != nil:
			c.errorf(k+".max_quantity", "%v", err)
		case !q.IsPositive():
			c.errorf(k+".max_quantity", "must be positive")
		default:
			out.maxQty = &q
		}
	}
	for i, a := range p.MaxNotional {
		key := k + ".max_notional"
		if len(p.MaxNotional) > 1 {
			key = fmt.Sprintf("%s[%d]", key, i)
		}
		amt, err := ParseAmount(a)
		if err != nil {
			c.errorf(key, "%v", err)
			continue
		}
		if out.maxNotional == nil {
			out.maxNotional = map[string]decimal.Decimal{}
		}
		if _, dup := out.maxNotional[amt.Currency]; dup {
			c.errorf(key, "second limit in %s", amt.Currency)
		}
		out.maxNotional[amt.Currency] = amt.Value
	}
	if p.PriceBand != "" {
		b, err := parseBand(p.PriceBand)
		if err != nil {
			c.errorf(k+".price_band", "%v", err)
		} else {
			out.band = &b
		}
	}
	if p.TimeZone != "" {
		loc, err := time.LoadLocation(p.TimeZone)
		if err != nil || p.TimeZone == "Local" {
			c.errorf(k+".time_zone", "unknown time zone %q (use an IANA name like Europe/London or UTC)", p.TimeZone)
		} else {
			out.loc = loc
		}
	}
	for i, h := range p.Hours {
		w, err := parseWindow(h)
		if err != nil {
			c.errorf(fmt.Sprintf("%s.hours[%d]", k, i), "%v", err)
			continue
		}
		out.hours = append(out.hours, w)
	}
	seen := map[string]bool{}
	for i, b := range p.Budgets {
		key := fmt.Sprintf("%s.budgets[%d]", k, i)
		r := budgetRule{name: b.Name, scope: b.Scope}
		switch {
		case b.Name == "":
			c.errorf(key+".name", "required")
		case !nameRE.MatchString(b.Name):
			c.errorf(key+".name", "must match [a-z0-9][a-z0-9_-]{0,31}, got %q", b.Name)
		case seen[b.Name]:
			c.errorf(key+".name", "duplicate budget name %q", b.Name)
		}
		seen[b.Name] = true
		if b.Scope != ScopeToken && b.Scope != ScopeAccount {
			c.errorf(key+".scope", "must be token or account, got %q", b.Scope)
		}
		switch b.Window {
		case "day":
			r.day = true
			r.window = 26 * time.Hour // longest calendar day, for pruning
		case "":
			c.errorf(key+".window", "required: day or a duration like 24h")
		default:
			d, err := time.ParseDuration(b.Window)
			if err != nil || d < time.Minute || d > maxRollingWindow {
				c.errorf(key+".window", "must be day or a duration from 1m to %s, got %q", maxRollingWindow, b.Window)
			}
			r.window = d
		}
		if b.Limit == "" {
			c.errorf(key+".limit", "required, like \"1000 USDT\"")
		} else if amt, err := ParseAmount(b.Limit); err != nil {
			c.errorf(key+".limit", "%v", err)
		} else {
			r.limit = amt
		}
		out.budgets = append(out.budgets, r)
	}
	for i, rt := range p.Rate {
		key := fmt.Sprintf("%s.rate[%d]", k, i)
		r := rateRule{scope: rt.Scope, spec: rt.Limit}
		if rt.Scope != ScopeToken && rt.Scope != ScopeAccount {
			c.errorf(key+".scope", "must be token or account, got %q", rt.Scope)
		}
		spec, err := parseRate(rt.Limit)
		if err != nil {
			c.errorf(key+".limit", "%v", err)
		}
		r.limit, r.burst, r.n, r.per = spec.perSec, spec.n, spec.n, spec.per
		switch {
		case rt.Burst < 0 || rt.Burst > 1_000_000:
			c.errorf(key+".burst", "must be from 1 to 1000000, got %d", rt.Burst)
		case rt.Burst > 0:
			r.burst = rt.Burst
		}
		r.spec = fmt.Sprintf("%s/%d", rt.Limit, r.burst)
		out.rates = append(out.rates, r)
	}
	if p.Expr != "" {
		prg, err := compileExpr(c.env, p.Expr)
		if err != nil {
			c.errorf(k+".expr", "CEL: %s", err)
		}
		out.expr = prg
	}
	out.needsNotional = len(out.maxNotional) > 0 || len(out.budgets) > 0
	out.orderRules = out.needsNotional || len(out.instAllow) > 0 || len(out.instDeny) > 0 ||
		out.sides != nil || out.types != nil || out.maxQty != nil || out.band != nil
	if len(c.errs) > nerr {
		return nil
	}
	return out
}

var orderTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
