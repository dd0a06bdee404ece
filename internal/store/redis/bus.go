package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/fanout"
)

// Reconnection backoff of a subscription, and how long a subscription may
// stay silent before it is checked with a PING.
const (
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	idleInterval = 15 * time.Second
)

// Bus is the Redis transport of package fanout: a version counter per
// topic (key KeyPrefix+"fanout:"+topic) and a channel of the same name on
// which each new version is published.
type Bus struct{ c *Client }

// Bus returns the client's fan-out transport.
func (c *Client) Bus() *Bus { return &Bus{c: c} }

// Publish increments topic's version and publishes it, in one script.
func (b *Bus) Publish(ctx context.Context, topic string) error {
	if err := b.c.admit(); err != nil {
		return err
	}
	k := b.c.key("fanout", topic)
	if err := publish.Run(ctx, b.c.rdb, []string{k}, k).Err(); err != nil {
		return b.c.errorf("publish "+topic, err)
	}
	return nil
}

// publish is INCR KEYS[1], then PUBLISH the new value on channel ARGV[1].
var publish = redis.NewScript(`
local v = redis.call("INCR", KEYS[1])
redis.call("PUBLISH", ARGV[1], v)
return v
`)

// Subscribe calls fn with every version published on topic until ctx is
// done, then returns ctx.Err(). After a failure it resubscribes, waiting
// 100 ms doubling to 5 s between attempts; versions published meanwhile
// are lost to this subscriber (fanout.Bus.Watch's polling of PostgreSQL
// covers them).
func (b *Bus) Subscribe(ctx context.Context, topic string, fn func(version int64)) error {
	ch := b.c.key("fanout", topic)
	backoff := minBackoff
	for {
		err := b.subscribeOnce(ctx, ch, fn, &backoff)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.c.observe(err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// subscribeOnce subscribes on one connection and delivers until it fails.
func (b *Bus) subscribeOnce(ctx context.Context, ch string, fn func(int64), backoff *time.Duration) error {
	ps := b.c.rdb.Subscribe(ctx, ch)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	for {
		msg, err := ps.ReceiveTimeout(ctx, idleInterval)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			*backoff = minBackoff
			b.c.observe(nil)
		case *redis.Message:
			v, err := strconv.ParseInt(m.Payload, 10, 64)
			if err != nil {
				continue
			}
			fn(v)
		}
	}
}

var _ fanout.Transport = (*Bus)(nil)
