package redisstore_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/keystile/keystile/internal/fanout"
	"github.com/keystile/keystile/internal/policy"
	redisstore "github.com/keystile/keystile/internal/store/redis"
)

// Wiring one replica: shared rate limits with a fallback, and fan-out of
// token changes by pub/sub and polling.
func ExampleOpen() {
	ctx := context.Background()
	log := slog.Default()
	redisstore.SetDriverLogger(log)
	o, err := redisstore.ParseURL("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Error("redis", "err", err)
		return
	}
	o.KeyPrefix = "keystile:"
	c, err := redisstore.Open(ctx, o)
	if err != nil {
		log.Error("redis", "err", err)
		return
	}
	defer c.Close()

	fallback := policy.RatesFallback{Mode: policy.FallbackLocalShare, Replicas: 3}
	engine := policy.New(policy.Options{Rates: c.Rates(), RatesFallback: fallback, Logger: log})
	_ = engine

	var versions fanout.VersionSource // the *postgres.DB in package app
	bus, err := fanout.New(fanout.Options{Source: versions, Transport: c.Bus(), Logger: log})
	if err != nil {
		log.Error("fanout", "err", err)
		return
	}
	bus.Watch(ctx, fanout.TopicTokens, func(int64) { /* tokens.Reload(ctx) */ })
	// After a token is revoked (and its version bumped in PostgreSQL):
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := bus.Publish(pctx, fanout.TopicTokens); err != nil {
		log.Warn("fanout: publish failed; replicas will see the change by polling", "err", err)
	}
	log.Info(c.Status(ctx, redisstore.StatusOptions{RatesShared: true, Rates: fallback, Poll: bus.PollInterval()}).String())
}
