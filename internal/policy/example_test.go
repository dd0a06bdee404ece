package policy_test

import (
	"context"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/venue"
)

func ExampleCompile() {
	cfg, err := config.Parse("keystile.yaml", []byte(`
venues:
  binance:
    type: binance
    credential: binance-main
    base_url: "https://api.binance.com"
policies:
  scalper:
    operations: ["market.read", "order.*"]
    max_notional: "250 USDT"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := policy.Compile(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	e := policy.New(policy.Options{})
	e.Load(set)
	for _, qty := range []string{"0.005", "0.01"} {
		d := e.Evaluate(context.Background(), &policy.Input{
			Time: time.Now(), TokenID: "tok_example", Policy: "scalper", Venue: "binance",
			Operation: venue.OpOrderPlace, Method: "POST", Path: "/api/v3/order",
			Order: &venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: qty, Price: "37500"},
		})
		fmt.Println(d.Allow, d.Rule, d.Notional)
	}
	d := e.Evaluate(context.Background(), &policy.Input{Policy: "scalper", Venue: "binance", Operation: venue.OpWalletWithdraw})
	fmt.Println(d.Allow, d.Rule, d.Status)
	// Output:
	// true  187.5 USDT
	// false policy.scalper.max_notional 375 USDT
	// false policy.scalper.operation 403
}
