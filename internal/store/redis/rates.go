package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/policy"
)

// Rates is a policy.SharedRates in Redis: one GCRA bucket per key, shared
// by every replica using the same server and key prefix. A bucket is the
// theoretical arrival time (TAT) of the next request, stored as a number
// with an expiry, as github.com/go-redis/redis_rate keeps it: one bucket is
// taken with redis_rate itself, several all-or-none with multiGCRA (the
// same arithmetic over all keys in one script). Time is the Redis server's
// (TIME), so replicas' clocks do not matter.
//
// Keys are "rate:" + KeyPrefix + the policy's bucket key (redis_rate puts
// its "rate:" first).
type Rates struct {
	c   *Client
	lim *redis_rate.Limiter
}

// Rates returns the shared rate buckets.
func (c *Client) Rates() *Rates {
	return &Rates{c: c, lim: redis_rate.NewLimiter(c.rdb)}
}

// Take takes one request from every bucket, all or none.
func (r *Rates) Take(ctx context.Context, keys []policy.RateKey) (time.Duration, error) {
	if err := check(keys); err != nil {
		return 0, err
	}
	if err := r.c.admit(); err != nil {
		return 0, err
	}
	if len(keys) == 1 {
		k := keys[0]
		res, err := r.lim.AllowN(ctx, r.c.prefix+k.Key, redis_rate.Limit{Rate: k.Rate, Burst: k.Burst, Period: k.Period}, 1)
		if err != nil {
			return 0, r.c.errorf("take rate", err)
		}
		if res.Allowed > 0 {
			return 0, nil
		}
		return max(res.RetryAfter, time.Millisecond), nil
	}
	return r.run(ctx, keys, false)
}

// Peek reports the wait Take would report, taking nothing.
func (r *Rates) Peek(ctx context.Context, keys []policy.RateKey) (time.Duration, error) {
	if err := check(keys); err != nil {
		return 0, err
	}
	if err := r.c.admit(); err != nil {
		return 0, err
	}
	return r.run(ctx, keys, true)
}

func check(keys []policy.RateKey) error {
	for _, k := range keys {
		if k.Rate <= 0 || k.Burst <= 0 || k.Period <= 0 {
			return fmt.Errorf("redisstore: rate bucket %q: rate, burst and period must be positive", k.Key)
		}
	}
	return nil
}

func (r *Rates) run(ctx context.Context, keys []policy.RateKey, peek bool) (time.Duration, error) {
	names := make([]string, len(keys))
	args := make([]any, 0, 1+3*len(keys))
	args = append(args, peek)
	for i, k := range keys {
		names[i] = "rate:" + r.c.prefix + k.Key
		args = append(args, k.Burst, k.Rate, k.Period.Seconds())
	}
	s, err := multiGCRA.Run(ctx, r.c.rdb, names, args...).Text()
	if err != nil {
		return 0, r.c.errorf("take rate", err)
	}
	wait, err := strconv.ParseFloat(s, 64)
	if err != nil || wait < 0 {
		return 0, r.c.errorf("take rate", errors.New("malformed reply"))
	}
	if wait == 0 {
		return 0, nil
	}
	return max(time.Duration(wait*float64(time.Second)), time.Millisecond), nil
}

// multiGCRA is redis_rate's GCRA over several buckets, all or none. ARGV
// is peek (1 or 0), then burst, rate and period (seconds) for each key. It
// returns the wait in seconds, "0" when it took a request from every
// bucket (never with peek).
var multiGCRA = redis.NewScript(`
redis.replicate_commands()
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local peek = ARGV[1] == "1"
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local burst = tonumber(ARGV[3*i - 1])
  local rate = tonumber(ARGV[3*i])
  local period = tonumber(ARGV[3*i + 1])
  local emission = period / rate
  local tat = tonumber(redis.call("GET", key) or now) or now
  tat = math.max(tat, now)
  local new_tat = tat + emission
  local diff = now - (new_tat - emission * burst)
  if diff < 0 then
    wait = math.max(wait, -diff)
  end
  tats[i] = new_tat
end
if wait > 0 or peek then
  return tostring(wait)
end
for i, key in ipairs(KEYS) do
  local reset = tats[i] - now
  if reset > 0 then
    redis.call("SET", key, tats[i], "EX", math.ceil(reset))
  end
end
return "0"
`)

var _ policy.SharedRates = (*Rates)(nil)
