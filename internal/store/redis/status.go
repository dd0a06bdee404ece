package redisstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/policy"
)

// StatusOptions describe how the gateway uses Redis, for Status.
type StatusOptions struct {
	// Rates is the policy engine's rate fallback; RatesShared says
	// whether the engine uses Rates at all.
	RatesShared bool
	Rates       policy.RatesFallback
	// Poll is the interval at which replicas poll PostgreSQL for
	// changes (fanout.Bus.PollInterval; 0: no polling).
	Poll time.Duration
}

// Status is the state of each component that depends on Redis, one line
// each, for readyz and `keystile status`.
type Status struct {
	Up         bool
	DownSince  time.Time // zero while up
	Redis      string    // "redis: ok" or "redis: down since ..."
	RateLimits string    // "rate limits: ..."
	Revocation string    // "revocation: ..."
}

func (s Status) String() string {
	return strings.Join([]string{s.Redis, s.RateLimits, s.Revocation}, ", ")
}

// Status checks Redis (PING, bounded by ctx and the read timeout) and
// describes what each component does in that state.
func (c *Client) Status(ctx context.Context, o StatusOptions) Status {
	err := c.Ready(ctx)
	since := c.DownSince()
	if err != nil && since.IsZero() {
		since = c.now() // ctx ended before the hook saw it
	}
	s := Status{Up: err == nil, DownSince: since}
	if err == nil {
		s.DownSince = time.Time{}
	}
	switch {
	case s.Up:
		s.Redis = "redis: ok"
	default:
		s.Redis = "redis: down since " + since.UTC().Format(time.RFC3339)
	}
	switch {
	case !o.RatesShared:
		s.RateLimits = "rate limits: per replica"
	case s.Up:
		s.RateLimits = "rate limits: shared in Redis"
	case o.Rates.Mode == policy.FallbackLocalShare:
		s.RateLimits = fmt.Sprintf("rate limits: local_share (1/%d of each limit per replica)", max(o.Rates.Replicas, 1))
	default:
		s.RateLimits = "rate limits: fail_closed"
	}
	poll := "polling PostgreSQL every " + o.Poll.String()
	switch {
	case s.Up && o.Poll > 0:
		s.Revocation = "revocation: Redis pub/sub and " + poll
	case s.Up:
		s.Revocation = "revocation: Redis pub/sub"
	case o.Poll > 0:
		s.Revocation = "revocation: " + poll
	default:
		s.Revocation = "revocation: not propagated until Redis is back"
	}
	return s
}
