package kraken

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/venue"
)

// Tier limits from Kraken's "Spot REST API rate limits" page: the REST
// counter (max, decay per second; every private call but orders costs 1)
// and the per-account trading counter (AddOrder and cancels, counted here
// at 1 each).
type tierLimits struct {
	restMax, restDecay   float64
	tradeMax, tradeDecay float64
}

func tierOf(name string) (tierLimits, error) {
	switch name {
	case "", "starter":
		return tierLimits{15, 0.33, 60, 1}, nil
	case "intermediate":
		return tierLimits{20, 0.5, 125, 2.34}, nil
	case "pro":
		return tierLimits{20, 1, 180, 3.75}, nil
	}
	return tierLimits{}, fmt.Errorf("kraken: unknown tier %q (starter, intermediate, pro, none)", name)
}

// headroom keeps 5% of each counter unused.
const headroom = 0.95

// defaultBackoff applies to a 429 without Retry-After.
const defaultBackoff = 60 * time.Second

type limiter struct {
	lim  tierLimits // this replica's share of base
	base tierLimits // the tier's limits for the whole API key
	none bool       // tier "none": no local counter model (429 back-off still applies)

	mu           sync.Mutex
	rest, trade  float64
	at           time.Time
	backoffUntil time.Time
}

func newLimiter(tier string) (*limiter, error) {
	if tier == "none" {
		return &limiter{none: true}, nil
	}
	l, err := tierOf(tier)
	if err != nil {
		return nil, err
	}
	return &limiter{lim: l, base: l}, nil
}

// share makes l count against 1/n of each counter: its maximum and its
// decay (n replicas on one API key, each counting only its own calls).
func (l *limiter) share(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lim = l.base
	if n > 1 {
		f := float64(n)
		l.lim = tierLimits{l.base.restMax / f, l.base.restDecay / f, l.base.tradeMax / f, l.base.tradeDecay / f}
	}
}

// decay brings the counters to now.
func (l *limiter) decay(now time.Time) {
	if !l.at.IsZero() && now.After(l.at) {
		s := now.Sub(l.at).Seconds()
		l.rest = max(0, l.rest-s*l.lim.restDecay)
		l.trade = max(0, l.trade-s*l.lim.tradeDecay)
	}
	if l.at.IsZero() || now.After(l.at) {
		l.at = now
	}
}

func (l *limiter) allow(op string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.backoffUntil) {
		return l.backoffUntil.Sub(now), false
	}
	if l.none {
		return 0, true
	}
	l.decay(now)
	cnt, limit, decay := &l.rest, l.lim.restMax*headroom, l.lim.restDecay
	switch op {
	case venue.OpMarketRead:
		return 0, true // public endpoints are limited per IP, not per key
	case venue.OpOrderPlace, venue.OpOrderCancel, venue.OpOrderCancelAll:
		cnt, limit, decay = &l.trade, l.lim.tradeMax*headroom, l.lim.tradeDecay
	}
	if *cnt+1 > limit {
		// Rounded up to 100 ms so that waiting that long is enough.
		wait := time.Duration(math.Ceil((*cnt+1-limit)/decay*10)) * 100 * time.Millisecond
		return max(wait, time.Second), false
	}
	*cnt++
	return 0, true
}

func (l *limiter) observe(resp *http.Response, now time.Time) {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		return
	}
	d := defaultBackoff
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	}
	l.mu.Lock()
	if u := now.Add(d); u.After(l.backoffUntil) {
		l.backoffUntil = u
	}
	l.mu.Unlock()
}

// RateUsage implements venue.RateUsage: keystile's model of Kraken's
// decaying REST and trading counters (none for tier "none").
func (v *Venue) RateUsage(now time.Time) []venue.Usage {
	l := v.rl
	if l.none {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decay(now)
	return []venue.Usage{
		{Window: "rest_counter", Used: l.rest, Limit: l.lim.restMax},
		{Window: "trade_counter", Used: l.trade, Limit: l.lim.tradeMax},
	}
}

var _ venue.RateUsage = (*Venue)(nil)
