package venue_test

import (
	"testing"
	"time"

	"github.com/keystile/keystile/internal/venue"
)

// allowed counts the requests of class l allows in one window.
func allowed(l venue.RateLimiter, class string, at time.Time) int {
	n := 0
	for range 1000 {
		if _, ok := l.Allow(class, at); !ok {
			break
		}
		n++
	}
	return n
}

// TestWindowLimiterShare checks that n replicas on one key each count
// against 1/n of the limit (less the 5% headroom), never below one request.
func TestWindowLimiterShare(t *testing.T) {
	for _, tc := range []struct {
		name         string
		limit, share int
		want         int
	}{
		{"alone", 20, 0, 19},
		{"one replica", 20, 1, 19},
		{"two replicas", 20, 2, 10},
		{"two replicas large", 100, 2, 48}, // 50 less 5% (2)
		{"three replicas", 100, 3, 32},     // 33 less 1
		{"more replicas than requests", 3, 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &venue.WindowLimiter{Window: time.Second, Limit: func(string) int { return tc.limit }, Backoff: time.Second}
			l.ShareLimits(tc.share)
			if got := allowed(l, "c", time.Unix(1000, 0)); got != tc.want {
				t.Fatalf("allowed %d per window, want %d", got, tc.want)
			}
		})
	}
	// Back to the whole limit.
	l := &venue.WindowLimiter{Window: time.Second, Limit: func(string) int { return 20 }, Backoff: time.Second}
	l.ShareLimits(2)
	l.ShareLimits(1)
	if got := allowed(l, "c", time.Unix(1000, 0)); got != 19 {
		t.Fatalf("after ShareLimits(1): %d per window, want 19", got)
	}
}
