package kraken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
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
	if wait := fullWait(*cnt, limit, decay); wait > 0 {
		return wait, false
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

// Kraken reports rate limiting inside an HTTP 200, in the answer's error
// list ("Spot REST Rate Limits", "API errors"):
//   - EAPI:Rate limit exceeded: the key's REST call counter is over its
//     maximum; calls stay restricted for a few seconds, longer if they go on;
//   - EOrder:Rate limit exceeded: the matching engine's trading counter
//     (per pair; modelled here per account);
//   - EService:Throttled: <unix time>: too many concurrent requests, try
//     again after that time;
//   - EGeneral:Temporary lockout: too many failed calls; a few minutes.
const (
	// restrictedBackoff is the back-off of a rate-limit error when no
	// counter is modelled (tier "none").
	restrictedBackoff = 5 * time.Second
	// maxThrottle caps the time an EService:Throttled answer asks for.
	maxThrottle = 10 * time.Minute
)

// noErrors is how Kraken writes an answer without errors; any other
// answer is decoded (so an error spelled with JSON escapes is read too).
var noErrors = []byte(`"error":[]`)

// observeAnswer reads Kraken's rate-limit errors from an answer's body.
// It returns the back-off taken for the whole key (REST counter,
// throttling, lockout), 0 for none or for the trading counter alone.
func (l *limiter) observeAnswer(body []byte, now time.Time) time.Duration {
	if bytes.Contains(body, noErrors) {
		return 0
	}
	var a struct {
		Error []string `json:"error"`
	}
	if json.Unmarshal(body, &a) != nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var shared time.Duration
	block := func(d time.Duration, whole bool) {
		if u := now.Add(d); u.After(l.backoffUntil) {
			l.backoffUntil = u
		}
		if whole {
			shared = max(shared, d)
		}
	}
	for _, e := range a.Error {
		code, detail, _ := strings.Cut(e, ":")
		detail = strings.TrimSpace(detail)
		switch {
		case code == "EAPI" && detail == "Rate limit exceeded":
			if l.none {
				block(restrictedBackoff, true)
				continue
			}
			// The venue's counter is full whatever keystile counted
			// (another client of the key, a restart): so is the model's.
			l.decay(now)
			l.rest = max(l.rest, l.lim.restMax)
			shared = max(shared, fullWait(l.rest, l.lim.restMax*headroom, l.lim.restDecay))
		case code == "EOrder" && detail == "Rate limit exceeded":
			if l.none {
				block(restrictedBackoff, false)
				continue
			}
			l.decay(now)
			l.trade = max(l.trade, l.lim.tradeMax)
		case code == "EService" && strings.HasPrefix(detail, "Throttled"):
			d := restrictedBackoff
			if ts, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(detail, "Throttled"), ":")), 10, 64); err == nil {
				if t := time.Unix(ts, 0); t.After(now) {
					d = min(t.Sub(now), maxThrottle)
				}
			}
			block(d, true)
		case code == "EGeneral" && detail == "Temporary lockout":
			block(defaultBackoff, true)
		}
	}
	return shared
}

// fullWait is how long a counter at cnt takes to decay to where one more
// call fits under limit (rounded up to 100 ms, at least a second), as
// allow answers.
func fullWait(cnt, limit, decay float64) time.Duration {
	if cnt+1 <= limit || decay <= 0 {
		return 0
	}
	wait := time.Duration(math.Ceil((cnt+1-limit)/decay*10)) * 100 * time.Millisecond
	return max(wait, time.Second)
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
