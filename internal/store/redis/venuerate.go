package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/venue"
)

// Backoffs is a venue.BackoffStore in Redis: one key per venue API key
// ("venuerate:" + the caller's key, after KeyPrefix) whose expiry is the
// back-off's end. Deadlines travel as durations from this process's clock
// and expire by the server's, so replicas' clocks need not agree.
type Backoffs struct{ c *Client }

// Backoffs returns the shared venue back-offs.
func (c *Client) Backoffs() *Backoffs { return &Backoffs{c: c} }

// Publish records that the venue pushed back until until, unless a later
// back-off is already recorded. A deadline already passed is ignored.
func (b *Backoffs) Publish(ctx context.Context, key string, until time.Time) error {
	ms := until.Sub(b.c.now()).Milliseconds()
	if ms <= 0 {
		return nil
	}
	if err := b.c.admit(); err != nil {
		return err
	}
	if err := extendBackoff.Run(ctx, b.c.rdb, []string{b.c.key("venuerate", key)}, ms).Err(); err != nil {
		return b.c.errorf("publish venue back-off", err)
	}
	return nil
}

// Until returns the end of the back-off recorded for key, the zero time
// when none is.
func (b *Backoffs) Until(ctx context.Context, key string) (time.Time, error) {
	if err := b.c.admit(); err != nil {
		return time.Time{}, err
	}
	d, err := b.c.rdb.PTTL(ctx, b.c.key("venuerate", key)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return time.Time{}, b.c.errorf("read venue back-off", err)
	}
	if d <= 0 {
		// -2: no key; -1: no expiry (not written by Publish).
		return time.Time{}, nil
	}
	return b.c.now().Add(d), nil
}

// extendBackoff sets KEYS[1] to expire in ARGV[1] ms unless it expires
// later already. It returns 1 when it extended the back-off.
var extendBackoff = redis.NewScript(`
local ms = tonumber(ARGV[1])
if redis.call("PTTL", KEYS[1]) >= ms then
  return 0
end
redis.call("SET", KEYS[1], "1", "PX", ms)
return 1
`)

var _ venue.BackoffStore = (*Backoffs)(nil)
