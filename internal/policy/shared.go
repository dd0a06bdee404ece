package policy

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/time/rate"
)

// RateKey is one rate bucket of a request: its key (policy, subject and
// rule, the same key the in-process buckets use) and its limit, Rate
// requests per Period with bursts of up to Burst.
type RateKey struct {
	Key    string
	Rate   int
	Period time.Duration
	Burst  int
}

// SharedRates keeps rate buckets outside the process, so that several
// gateway replicas share one limit (Options.Rates). Implementations are safe
// for concurrent use.
type SharedRates interface {
	// Take takes one request from every bucket in keys, all or none: it
	// returns 0 when it took them all, or the wait until every bucket
	// would have one and then took nothing. An error means the store
	// could not answer (nothing is known to be taken); the Engine then
	// applies Options.RatesFallback.
	Take(ctx context.Context, keys []RateKey) (wait time.Duration, err error)
	// Peek is Take without taking (dry runs).
	Peek(ctx context.Context, keys []RateKey) (wait time.Duration, err error)
}

// RateFallback is what the Engine does while SharedRates fails.
type RateFallback string

const (
	// FallbackFailClosed refuses every request a rate rule applies to
	// (503, rule RuleRateUnavailable). The zero RateFallback means this.
	FallbackFailClosed RateFallback = "fail_closed"
	// FallbackLocalShare enforces each limit divided by the number of
	// replicas (RatesFallback.Replicas) in this process.
	FallbackLocalShare RateFallback = "local_share"
)

// ParseRateFallback parses a configured fallback; "" is fail_closed.
func ParseRateFallback(s string) (RateFallback, error) {
	switch RateFallback(s) {
	case "", FallbackFailClosed:
		return FallbackFailClosed, nil
	case FallbackLocalShare:
		return FallbackLocalShare, nil
	}
	return "", fmt.Errorf("policy: rate fallback %q: want fail_closed or local_share", s)
}

// RatesFallback configures the Engine's behaviour while Options.Rates fails.
type RatesFallback struct {
	Mode RateFallback
	// Replicas is the number of gateway replicas sharing the limits; with
	// FallbackLocalShare each enforces 1/Replicas of every limit (at
	// least a burst of one). Values below 1 mean 1.
	Replicas int
}

// RuleRateUnavailable is the rule of a fail-closed refusal while the shared
// rate store is unavailable.
const RuleRateUnavailable = "rate.unavailable"

// sharedRate is rate() with Options.Rates set.
func (ev *evaluation) sharedRate(ctx context.Context) *Decision {
	keys := make([]RateKey, 0, len(ev.p.rates))
	for _, r := range ev.p.rates {
		keys = append(keys, RateKey{Key: ev.rateKey(r), Rate: r.n, Period: r.per, Burst: r.burst})
	}
	var wait time.Duration
	var err error
	if ev.in.DryRun {
		wait, err = ev.e.shared.Peek(ctx, keys)
	} else {
		wait, err = ev.e.shared.Take(ctx, keys)
	}
	if err != nil {
		if !ev.e.ratesDown.Swap(true) {
			ev.e.log.Warn("policy: shared rate store failed; applying the fallback until it answers",
				"fallback", string(cmp.Or(ev.e.fallback.Mode, FallbackFailClosed)), "err", err)
		}
		if ev.e.fallback.Mode != FallbackLocalShare {
			return &Decision{Rule: RuleRateUnavailable, Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
				Reason: "the shared rate-limit store is unavailable and the policy's rate rules fail closed", Notional: ev.notionalText()}
		}
		return ev.localRate(max(ev.e.fallback.Replicas, 1))
	}
	if ev.e.ratesDown.Swap(false) {
		ev.e.log.Info("policy: shared rate store answers again")
	}
	if wait <= 0 {
		return nil
	}
	return ev.rateDenial(wait)
}

// shareOf is r's limit divided among n replicas.
func (r rateRule) shareOf(n int) (rate.Limit, int) {
	if n <= 1 {
		return r.limit, r.burst
	}
	return r.limit / rate.Limit(n), max(r.burst/n, 1)
}
