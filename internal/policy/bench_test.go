package policy_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/keystile/keystile/internal/policy"
)

const benchPolicy = `policies:
  p:
    venues: [binance]
    operations: ["market.read", "account.read", "order.*"]
    instruments:
      allow: ["BTC*", "ETH*"]
      deny: ["*DOWN*"]
    sides: [buy, sell]
    order_types: [limit, market]
    max_quantity: "0.5"
    max_notional: ["5000 USDT", "5000 USDC"]
    time_zone: Europe/London
    hours: ["Mon-Sun 00:00-24:00"]
    rate:
      - scope: token
        limit: "1000000/s"
    expr: 'order.instrument == "" || order.side == "sell" || dec_lt(order.quantity, "0.2")'
`

// BenchmarkEvaluate: an order.place through a realistic policy with a CEL
// expression and a daily budget reserved in the real SQLite store (WAL,
// synchronous=FULL: one fsync'd transaction per order).
func BenchmarkEvaluate(b *testing.B) {
	db, _ := tempDB(b)
	e := policy.New(policy.Options{Budgets: db.Budgets()})
	e.Load(compile(b, benchPolicy+`    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000000000000 USDT"
`))
	ctx := context.Background()
	in := orderInput("p")
	b.ReportAllocs()
	for b.Loop() {
		d := e.Evaluate(ctx, in)
		if !d.Allow {
			b.Fatalf("%+v", d)
		}
		_ = d.Hold.Keep(ctx)
	}
}

// BenchmarkEvaluateNoBudget: the same policy without budgets (pure
// in-memory evaluation, CEL included).
func BenchmarkEvaluateNoBudget(b *testing.B) {
	e := policy.New(policy.Options{})
	e.Load(compile(b, benchPolicy))
	ctx := context.Background()
	in := orderInput("p")
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Evaluate(ctx, in); !d.Allow {
			b.Fatalf("%+v", d)
		}
	}
}

// BenchmarkEvaluateRead: a market.read (no order rules apply) under the
// same policy.
func BenchmarkEvaluateRead(b *testing.B) {
	e := policy.New(policy.Options{})
	e.Load(compile(b, benchPolicy))
	ctx := context.Background()
	in := orderInput("p")
	in.Operation, in.Order = "market.read", nil
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Evaluate(ctx, in); !d.Allow {
			b.Fatalf("%+v", d)
		}
	}
}

// BenchmarkEvaluateParallel is BenchmarkEvaluate with 64 goroutines
// placing orders at once against the same daily budget, as a busy gateway
// does: the store's group commit shares one fsync among them.
func BenchmarkEvaluateParallel(b *testing.B) {
	db, _ := tempDB(b)
	e := policy.New(policy.Options{Budgets: db.Budgets()})
	e.Load(compile(b, benchPolicy+`    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000000000000 USDT"
`))
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		in := orderInput("p")
		for pb.Next() {
			d := e.Evaluate(ctx, in)
			if !d.Allow {
				b.Errorf("%+v", d)
				return
			}
			_ = d.Hold.Keep(ctx)
		}
	})
}
