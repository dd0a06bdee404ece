package okx

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/sign"
	"github.com/keystile/keystile/internal/venue"
)

// Credential fields.
const (
	FieldAPIKey     = "api_key"
	FieldSecret     = "secret"
	FieldPassphrase = "passphrase"
)

// Request headers.
const (
	HeaderKey        = "OK-ACCESS-KEY"
	HeaderSign       = "OK-ACCESS-SIGN"
	HeaderTimestamp  = "OK-ACCESS-TIMESTAMP"
	HeaderPassphrase = "OK-ACCESS-PASSPHRASE"
	HeaderSimulated  = "X-Simulated-Trading"
)

// TimestampFormat is OKX's OK-ACCESS-TIMESTAMP layout (always UTC).
const TimestampFormat = "2006-01-02T15:04:05.000Z"

// ErrMalformedOrder reports an order placement keystile cannot read.
var ErrMalformedOrder = errors.New("okx: malformed order")

// Operations is OKX's operations table.
var Operations = venue.Table{
	{Method: "GET", Path: "/api/v5/market/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v5/public/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v5/account/balance", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/account/positions", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/account/config", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/asset/balances", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/asset/currencies", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/trade/order", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/orders-pending", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/orders-history", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/fills", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/fills-history", Op: venue.OpOrderRead},          // ccxt fetchMyTrades
	{Method: "GET", Path: "/api/v5/trade/orders-history-archive", Op: venue.OpOrderRead}, // ccxt fetchClosedOrders (older)
	{Method: "POST", Path: "/api/v5/trade/order", Op: venue.OpOrderPlace},
	// ccxt's createOrder sends its one order here, as a one-element array.
	{Method: "POST", Path: "/api/v5/trade/batch-orders", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v5/trade/cancel-order", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/api/v5/trade/cancel-batch-orders", Op: venue.OpOrderCancelAll},
	{Method: "POST", Path: "/api/v5/trade/cancel-all-after", Op: venue.OpOrderCancelAll},
	{Method: "POST", Path: "/api/v5/asset/withdrawal", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/api/v5/asset/transfer", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/api/v5/users/subaccount/apikey", Op: venue.OpAPIKeyManage},
	{Method: "POST", Path: "/api/v5/users/subaccount/modify-apikey", Op: venue.OpAPIKeyManage},
	{Method: "POST", Path: "/api/v5/users/subaccount/delete-apikey", Op: venue.OpAPIKeyManage},
}

// Public reports the routes OKX serves without authentication (GET
// /api/v5/market/* and /api/v5/public/*): keystile forwards them unsigned.
func Public(method, escapedPath string) bool { return Operations.Public(method, escapedPath) }

// Limit returns OKX's published request limit for op, per Window (per
// second limits doubled); unknown operations get 10.
func Limit(op string) int {
	switch op {
	case venue.OpMarketRead:
		return 20
	case venue.OpOrderRead, venue.OpOrderPlace, venue.OpOrderCancel:
		return 60
	case venue.OpOrderCancelAll:
		return 300
	case venue.OpWalletWithdraw:
		return 12
	case venue.OpWalletTransfer, venue.OpAPIKeyManage:
		return 2
	default:
		return 10
	}
}

// Window is the period of Limits.
const Window = 2 * time.Second

// defaultBackoff is how long to wait after a 429 without Retry-After.
const defaultBackoff = 2 * time.Second

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required: api_key, secret, passphrase
	Now         func() time.Time  // if nil, time.Now
}

// Venue is an OKX venue. It is safe for concurrent use.
type Venue struct {
	venue.Kit
	creds venue.Credentials
	now   func() time.Time
	rl    venue.WindowLimiter
}

// New returns an OKX venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("okx: no credentials")
	}
	v := &Venue{Kit: venue.Kit{Routes: Operations, KeyHeader: HeaderKey,
		Credentials: []string{HeaderKey, HeaderSign, HeaderTimestamp, HeaderPassphrase, HeaderSimulated}, ClientID: clientID()},
		creds: o.Credentials, now: o.Now,
		rl: venue.WindowLimiter{Window: Window, Limit: Limit, Backoff: defaultBackoff, MaxBackoff: time.Hour}}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// PublicHeaders implements venue.PublicHeaders: the timestamp and the
// demo-trading flag are not secret (the key, the signature and the
// passphrase are).
func (v *Venue) PublicHeaders() []string { return []string{HeaderTimestamp, HeaderSimulated} }

// Prehash returns the string OKX signs: timestamp + METHOD + requestPath
// (escaped path, plus "?" + raw query if any) + body.
func Prehash(timestamp, method, escapedPath, rawQuery string, body []byte) []byte {
	b := make([]byte, 0, len(timestamp)+len(method)+len(escapedPath)+len(rawQuery)+len(body)+1)
	b = append(b, timestamp...)
	b = append(b, strings.ToUpper(method)...)
	b = append(b, escapedPath...)
	if rawQuery != "" {
		b = append(b, '?')
		b = append(b, rawQuery...)
	}
	return append(b, body...)
}

// Sign returns base64(HMAC-SHA256(secret, prehash)).
func Sign(secretKey, prehash []byte) string {
	m := hmac.New(sha256.New, secretKey)
	m.Write(prehash)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	for _, h := range v.CredentialHeaders() {
		out.Header.Del(h)
	}
	if venue.TestEndpoint(ctx) {
		out.Header.Set(HeaderSimulated, "1")
	}
	if Public(out.Method, out.URL.EscapedPath()) {
		// Public market data: nothing to sign, no key to reveal.
		return nil
	}
	ts := v.now().UTC().Format(TimestampFormat)
	pre := Prehash(ts, out.Method, out.URL.EscapedPath(), out.URL.RawQuery, body)
	return v.creds(ctx, func(c venue.Credential) error {
		f, err := venue.CredentialFields(c, FieldAPIKey, FieldSecret, FieldPassphrase)
		if err != nil {
			return fmt.Errorf("okx: %w", err)
		}
		key, sec, pass := f[0], f[1], f[2]
		if sign.HasControl(key.Reveal()) || sign.HasControl(pass.Reveal()) {
			return errors.New("okx: credential: api_key or passphrase holds control characters")
		}
		out.Header.Set(HeaderKey, string(key.Reveal()))
		out.Header.Set(HeaderPassphrase, string(pass.Reveal()))
		out.Header.Set(HeaderTimestamp, ts)
		out.Header.Set(HeaderSign, Sign(sec.Reveal(), pre))
		return nil
	})
}

// Normalize implements venue.Normalizer for POST /api/v5/trade/order
// (JSON body: instId, side, ordType, sz, px, clOrdId, tgtCcy) and
// /api/v5/trade/batch-orders with one order (a JSON array of one such
// object; several orders wrap venue.ErrBatchOrders). A market order with
// tgtCcy quote_ccy gives sz as the notional.
func (v *Venue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	if isBatch(r.Path) {
		elem, _, err := batchOrder(r.Body)
		if err != nil {
			return nil, err
		}
		return ParseOrder(elem)
	}
	return ParseOrder(r.Body)
}

// isBatch reports the batch placement endpoint.
func isBatch(escapedPath string) bool {
	return strings.TrimRight(escapedPath, "/") == "/api/v5/trade/batch-orders"
}

// batchOrder returns the only order of a batch-orders body and its offset;
// a batch of several orders wraps venue.ErrBatchOrders.
func batchOrder(body []byte) (json.RawMessage, int, error) {
	elems, offsets, err := venue.JSONArray(body)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	case len(elems) == 0:
		return nil, 0, fmt.Errorf("%w: empty batch", ErrMalformedOrder)
	case len(elems) > 1:
		return nil, 0, fmt.Errorf("okx: %d orders: %w", len(elems), venue.ErrBatchOrders)
	}
	return elems[0], offsets[0], nil
}

// ParseOrder reads an OKX order placement body as OKX executes it (its
// documented ordType, sz and tgtCcy semantics):
//
//   - SPOT and MARGIN instruments (BASE-QUOTE): limit, post_only, fok,
//     ioc, mmp, mmp_and_post_only and elp orders buy or sell sz base at
//     px; a market order ignores px and executes at the market, its sz in
//     base or quote currency: with tdMode cash (SPOT) as tgtCcy says
//     (default quote for a buy, base for a sell); with a margin tdMode it
//     may be a MARGIN order (a buy's sz always in quote, a sell's in base)
//     or a SPOT order of a unified account (tgtCcy), so both readings are
//     kept and the larger charge applies.
//   - FUTURES, SWAP and OPTION instruments (more parts: BTC-USDT-SWAP):
//     sz counts contracts of a size (ctVal) keystile does not know.
//     market and optimal_limit_ioc execute at the market.
//   - any other ordType: px, and the market.
//
// A tradeQuoteCcy other than the instrument's quote currency would trade
// in a currency keystile does not charge, and is refused.
func ParseOrder(body []byte) (*venue.Order, error) {
	f, err := venue.JSONFields(body, "instId", "side", "ordType", "sz", "px", "clOrdId", "tgtCcy", "tdMode", "tradeQuoteCcy")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
	sz, px, tgt, tdMode := f[3], f[4], f[6], f[7]
	o := &venue.Order{Instrument: f[0], Side: strings.ToLower(f[1]), Type: strings.ToLower(f[2]), ClientOrderID: f[5]}
	switch {
	case o.Instrument == "":
		return nil, fmt.Errorf("%w: no instId", ErrMalformedOrder)
	case o.Side != "buy" && o.Side != "sell":
		return nil, fmt.Errorf("%w: side must be buy or sell", ErrMalformedOrder)
	case o.Type == "":
		return nil, fmt.Errorf("%w: no ordType", ErrMalformedOrder)
	case sz == "":
		return nil, fmt.Errorf("%w: no sz", ErrMalformedOrder)
	}
	parts := strings.Split(o.Instrument, "-")
	spot := len(parts) == 2
	if q := f[8]; q != "" && (!spot || !strings.EqualFold(q, parts[1])) {
		return nil, fmt.Errorf("%w: tradeQuoteCcy %q is not the quote currency of %s", ErrMalformedOrder, q, o.Instrument)
	}
	switch o.Type {
	case "limit", "post_only", "fok", "ioc", "mmp", "mmp_and_post_only", "elp":
		o.Price = px
	case "market", "optimal_limit_ioc":
		o.Market = true
	default:
		o.Market, o.Price = true, px
	}
	if !spot {
		o.Quantity, o.Contracts = sz, true
		return o, nil
	}
	if o.Type != "market" {
		o.Quantity = sz
		return o, nil
	}
	base, quote, err := spotMarketUnits(o.Side, tdMode, tgt)
	if err != nil {
		return nil, err
	}
	if base {
		o.Quantity = sz
	}
	if quote {
		o.Notional = sz
	}
	return o, nil
}

// spotMarketUnits says whether a market order's sz on a spot instrument
// may be read in base and/or in quote currency (see ParseOrder).
func spotMarketUnits(side, tdMode, tgtCcy string) (base, quote bool, err error) {
	spotQuote := side == "buy"
	switch tgtCcy {
	case "":
	case "quote_ccy":
		spotQuote = true
	case "base_ccy":
		spotQuote = false
	default:
		return false, false, fmt.Errorf("%w: tgtCcy %q", ErrMalformedOrder, tgtCcy)
	}
	base, quote = !spotQuote, spotQuote
	if tdMode != "cash" {
		// A MARGIN market order: a buy in quote, a sell in base.
		if side == "buy" {
			quote = true
		} else {
			base = true
		}
	}
	return base, quote, nil
}

// Allow implements venue.RateLimiter: it refuses while an OKX back-off is
// active and when op has used all but 5% of its Limits in the current
// Window (counting this request).
func (v *Venue) Allow(op string, now time.Time) (time.Duration, bool) { return v.rl.Allow(op, now) }

// Observe implements venue.RateLimiter: an HTTP 429 (OKX code 50011)
// starts a back-off of Retry-After seconds (at most an hour), or 2 seconds
// (one window).
func (v *Venue) Observe(resp *http.Response, now time.Time) { v.rl.Observe(resp, now) }

// ShareLimits implements venue.LimitSharer: OKX sends no usage headers,
// so each of n replicas on one API key counts its own requests against
// 1/n of every Limit.
func (v *Venue) ShareLimits(n int) { v.rl.ShareLimits(n) }

var (
	_ venue.Venue        = (*Venue)(nil)
	_ venue.Normalizer   = (*Venue)(nil)
	_ venue.TokenCarrier = (*Venue)(nil)
	_ venue.RateLimiter  = (*Venue)(nil)
	_ venue.LimitSharer  = (*Venue)(nil)
)
