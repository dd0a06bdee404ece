package policy

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiters is the size above which idle buckets are swept.
const maxLimiters = 1 << 16

// limiters holds the token buckets, keyed by policy, subject and rule. A
// bucket that has refilled completely is equivalent to a new one, so the
// sweep that drops those loses nothing.
type limiters struct {
	mu   sync.Mutex
	m    map[string]*rate.Limiter
	adds int
}

func newLimiters() *limiters { return &limiters{m: map[string]*rate.Limiter{}} }

func (l *limiters) get(key string, lim rate.Limit, burst int, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.m[key]; ok {
		return r
	}
	l.adds++
	if len(l.m) >= maxLimiters || l.adds%4096 == 0 {
		l.sweep(now)
	}
	r := rate.NewLimiter(lim, burst)
	l.m[key] = r
	return r
}

// sweep drops full buckets. Called with l.mu held.
func (l *limiters) sweep(now time.Time) {
	for k, r := range l.m {
		if r.TokensAt(now) >= float64(r.Burst()) {
			delete(l.m, k)
		}
	}
}

// rate takes one token from each of the policy's buckets, all or none. A
// dry run only looks. With Options.Rates the buckets are shared.
func (ev *evaluation) rate(ctx context.Context) *Decision {
	if ev.e.shared != nil {
		return ev.sharedRate(ctx)
	}
	return ev.localRate(1)
}

// rateKey is r's bucket key: policy, subject and rule.
func (ev *evaluation) rateKey(r rateRule) string {
	return ev.p.name + "|" + ev.scopeID(r.scope) + "|" + r.spec
}

// localRate is rate with this process's buckets, each limit divided among
// replicas (1: the whole limit).
func (ev *evaluation) localRate(replicas int) *Decision {
	now := ev.in.Time
	var taken []*rate.Reservation
	var wait time.Duration
	for _, r := range ev.p.rates {
		key := ev.rateKey(r)
		limit, burst := r.shareOf(replicas)
		if replicas > 1 {
			key = "share|" + key
		}
		lim := ev.e.rates.get(key, limit, burst, now)
		if ev.in.DryRun {
			if tok := lim.TokensAt(now); tok < 1 {
				wait = max(wait, time.Duration(math.Ceil((1-tok)/float64(limit)*float64(time.Second))))
			}
			continue
		}
		res := lim.ReserveN(now, 1)
		if !res.OK() {
			wait = max(wait, time.Second)
			continue
		}
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			wait = max(wait, d)
			continue
		}
		taken = append(taken, res)
	}
	if wait == 0 {
		return nil
	}
	for _, res := range taken {
		res.CancelAt(now)
	}
	return ev.rateDenial(wait)
}

func (ev *evaluation) rateDenial(wait time.Duration) *Decision {
	d := ev.deny("rate", "request rate above the policy's limit; retry in %s", wait.Round(time.Millisecond))
	d.Status, d.RetryAfter = http.StatusTooManyRequests, wait
	return d
}
