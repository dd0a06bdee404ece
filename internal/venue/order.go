package venue

import (
	"context"
	"net/http"
	"time"
)

// Order is the normalized content of an order placement: what policy
// (limits, budgets) and idempotency need, read from the request before it
// is signed, as the venue will execute it (its own documented semantics,
// not the fields' names). Amounts are decimal strings exactly as the bot
// sent them (never floats).
//
// The policy charges an order at the worst price it may fill at: the
// highest of Price, TriggerPrice and LegPrices, and the venue's reference
// price too when the order (or a leg) executes at the market (Market), or
// when it sells (a sell limit below the market fills at the market). When
// both Quantity and Notional are set the venue may read either, and the
// larger charge applies.
type Order struct {
	Instrument string // venue symbol, e.g. BTCUSDT, XBTUSD, BTC-USDT
	Side       string // buy or sell (lower case); "" when the request does not say (an edit)
	Type       string // limit, market, ... (lower case)
	Quantity   string // base quantity
	// Price is the limit price the venue honours: "" for an order that
	// executes at the market, even when the bot sent a price the venue
	// ignores (a market order's price field).
	Price string
	// Notional is the quote amount the order spends or receives, if the
	// venue reads the size in quote currency.
	Notional string
	// TriggerPrice is the stop or trigger price of a stop-loss,
	// take-profit or conditional order, if any.
	TriggerPrice string
	// LegPrices are further prices some leg of the order may fill at (the
	// other leg of a one-cancels-the-other order, a stop-limit leg).
	LegPrices []string
	// Market is true when the order, or one of its legs, executes at the
	// market price once live (market and stop-market orders, pegged
	// prices): the policy judges it at the venue's reference price, and
	// refuses it when no reference price can be had.
	Market bool
	// Contracts is true when Quantity counts contracts of a size keystile
	// does not know (futures, swaps, options): no notional can be computed
	// from it.
	Contracts     bool
	ClientOrderID string // the bot's client order id, if any
}

// Normalizer is implemented by venues that can read orders: Normalize
// returns the order of an order.place request (nil, nil for other
// operations) or an error for a malformed one.
type Normalizer interface {
	Normalize(r *Request) (*Order, error)
	// ClientOrderIDField is the venue's field for the client order id
	// (newClientOrderId, cl_ord_id, clOrdId, orderLinkId, client_order_id).
	ClientOrderIDField() string
}

// TokenCarrier is implemented by venues whose SDKs put the API key in a
// place of their own (X-MBX-APIKEY, API-Key, OK-ACCESS-KEY, a JWT claim):
// a bot using the venue's unmodified SDK puts its kst_ token there, and the
// gateway finds it. Authenticate must then remove everything the SDK added
// (timestamps, nonces, signatures) and sign afresh.
type TokenCarrier interface {
	BotToken(h http.Header, rawQuery string) (string, bool)
}

// RateLimiter is implemented by venues that track the exchange's published
// limits and usage headers: Allow is asked before a request is signed and
// forwarded (false: answer 429 with Retry-After instead of risking a ban of
// the shared key); Observe sees every answer.
type RateLimiter interface {
	Allow(op string, now time.Time) (retryAfter time.Duration, ok bool)
	Observe(resp *http.Response, now time.Time)
}

// AnswerObserver is implemented by RateLimiters of venues that report
// rate limiting in the body of an answer rather than (only) in its status:
// Kraken's "EAPI:Rate limit exceeded" in an HTTP 200, Bybit's retCode
// 10006. The gateway calls ObserveAnswer with each answer's body as the
// venue sent it, after Observe (it must not keep body). It returns the
// back-off it took for the whole API key, 0 if none (SharedLimiter
// passes it on to the other replicas).
type AnswerObserver interface {
	ObserveAnswer(resp *http.Response, body []byte, now time.Time) time.Duration
}

// RateUsage is implemented by venues whose RateLimiter models the
// exchange's published limits: Usage reports, per limit window, how much
// of it the shared key has used, as the venue last reported it or as
// keystile counts it (metrics: rate-limit headroom).
type RateUsage interface {
	RateUsage(now time.Time) []Usage
}

// Usage is one rate-limit window: Used of Limit (same unit: request
// weight, orders, counter points).
type Usage struct {
	Window      string // e.g. weight_1m, orders_10s, rest_counter
	Used, Limit float64
}

type testKey struct{}

// WithTestEndpoint marks ctx as a request to the venue's test/demo
// endpoint (kst_test_ token). The gateway sets it.
func WithTestEndpoint(ctx context.Context, test bool) context.Context {
	return context.WithValue(ctx, testKey{}, test)
}

// TestEndpoint reports whether the request goes to the test/demo endpoint
// (e.g. OKX adds x-simulated-trading: 1).
func TestEndpoint(ctx context.Context) bool {
	t, _ := ctx.Value(testKey{}).(bool)
	return t
}

// Sequencer is implemented by venues whose requests must reach the venue
// in the order they were signed (Kraken: strictly increasing nonces per
// key). The gateway calls Sequence before Authenticate and release once the
// venue's answer headers arrived (or the attempt failed), so signing and
// sending are one critical section per key.
type Sequencer interface {
	Sequence(ctx context.Context, out *http.Request) (release func(), err error)
}
