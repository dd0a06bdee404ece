package binance

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/venue"
)

// Binance spot's published limits (GET /api/v3/exchangeInfo rateLimits).
const (
	MaxWeight1M   = 6000
	MaxOrders10s  = 100
	MaxOrders1d   = 200000
	headroomRatio = 0.95
)

// Back-offs when an answer carries no Retry-After.
const (
	default429 = time.Minute
	default418 = 2 * time.Minute
)

// limiter tracks the usage Binance reports. The windows are aligned to
// the clock (minute, 10 s, UTC day), as Binance counts them.
type limiter struct {
	mu           sync.Mutex
	weight       int
	weightWin    int64 // unix minute of the last weight header
	orders10s    int
	orders10sWin int64 // unix time / 10
	orders1d     int
	orders1dWin  int64 // unix day
	backoffUntil time.Time
}

func over(n, limit int) bool { return float64(n) >= float64(limit)*headroomRatio }

// Allow implements venue.RateLimiter.
func (v *Venue) Allow(op string, now time.Time) (time.Duration, bool) {
	l := &v.rl
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.backoffUntil) {
		return l.backoffUntil.Sub(now), false
	}
	s := now.Unix()
	if l.weightWin == s/60 && over(l.weight, MaxWeight1M) {
		return time.Unix((s/60+1)*60, 0).Sub(now), false
	}
	if op == venue.OpOrderPlace {
		if l.orders10sWin == s/10 && over(l.orders10s, MaxOrders10s) {
			return time.Unix((s/10+1)*10, 0).Sub(now), false
		}
		if l.orders1dWin == s/86400 && over(l.orders1d, MaxOrders1d) {
			return time.Unix((s/86400+1)*86400, 0).Sub(now), false
		}
	}
	return 0, true
}

// Observe implements venue.RateLimiter.
func (v *Venue) Observe(resp *http.Response, now time.Time) {
	if resp == nil {
		return
	}
	l := &v.rl
	l.mu.Lock()
	defer l.mu.Unlock()
	s := now.Unix()
	if n, err := strconv.Atoi(resp.Header.Get("X-MBX-USED-WEIGHT-1M")); err == nil {
		l.weight, l.weightWin = n, s/60
	}
	if n, err := strconv.Atoi(resp.Header.Get("X-MBX-ORDER-COUNT-10S")); err == nil {
		l.orders10s, l.orders10sWin = n, s/10
	}
	if n, err := strconv.Atoi(resp.Header.Get("X-MBX-ORDER-COUNT-1D")); err == nil {
		l.orders1d, l.orders1dWin = n, s/86400
	}
	var d time.Duration
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		d = default429
	case http.StatusTeapot:
		d = default418
	default:
		return
	}
	if sec, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && sec >= 0 {
		d = time.Duration(sec) * time.Second
	}
	if u := now.Add(d); u.After(l.backoffUntil) {
		l.backoffUntil = u
	}
}

// RateUsage implements venue.RateUsage: the usage Binance last reported,
// in its current window (0 once the window has passed).
func (v *Venue) RateUsage(now time.Time) []venue.Usage {
	l := &v.rl
	l.mu.Lock()
	defer l.mu.Unlock()
	s := now.Unix()
	cur := func(n int, win, w int64) float64 {
		if win != w {
			return 0
		}
		return float64(n)
	}
	return []venue.Usage{
		{Window: "weight_1m", Used: cur(l.weight, l.weightWin, s/60), Limit: MaxWeight1M},
		{Window: "orders_10s", Used: cur(l.orders10s, l.orders10sWin, s/10), Limit: MaxOrders10s},
		{Window: "orders_1d", Used: cur(l.orders1d, l.orders1dWin, s/86400), Limit: MaxOrders1d},
	}
}

var _ venue.RateUsage = (*Venue)(nil)
