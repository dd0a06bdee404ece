package okx

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
	{Method: "GET", Path: "/api/v5/market/*", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v5/public/*", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v5/account/balance", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/account/positions", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/account/config", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/asset/balances", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v5/trade/order", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/orders-pending", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/orders-history", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v5/trade/fills", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/api/v5/trade/order", Op: venue.OpOrderPlace},
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
func Public(method, escapedPath string) bool {
	op, _ := Operations.Lookup(method, escapedPath)
	return op == venue.OpMarketRead
}

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
	creds venue.Credentials
	now   func() time.Time

	mu     sync.Mutex
	counts map[string]int
	starts map[string]time.Time
	until  time.Time
}

// New returns an OKX venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("okx: no credentials")
	}
	v := &Venue{creds: o.Credentials, now: o.Now, counts: map[string]int{}, starts: map[string]time.Time{}}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Classify implements venue.Venue.
func (v *Venue) Classify(r *venue.Request) (string, bool) { return Operations.Lookup(r.Method, r.Path) }

// CredentialHeaders implements venue.Venue.
func (v *Venue) CredentialHeaders() []string {
	return []string{HeaderKey, HeaderSign, HeaderTimestamp, HeaderPassphrase, HeaderSimulated}
}

// PublicHeaders implements venue.PublicHeaders: the timestamp and the
// demo-trading flag are not secret (the key, the signature and the
// passphrase are).
func (v *Venue) PublicHeaders() []string { return []string{HeaderTimestamp, HeaderSimulated} }

// BotToken implements venue.TokenCarrier: an OKX SDK sends the kst_ token
// as its API key, in OK-ACCESS-KEY.
func (v *Venue) BotToken(h http.Header, _ string) (string, bool) {
	t := strings.TrimSpace(h.Get(HeaderKey))
	return t, strings.HasPrefix(t, "kst_")
}

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
		key, err := c.Field(FieldAPIKey)
		if err != nil {
			return fmt.Errorf("okx: credential: %w", err)
		}
		sec, err := c.Field(FieldSecret)
		if err != nil {
			return fmt.Errorf("okx: credential: %w", err)
		}
		pass, err := c.Field(FieldPassphrase)
		if err != nil {
			return fmt.Errorf("okx: credential: %w", err)
		}
		if key.IsZero() || sec.IsZero() || sign.HasControl(key.Reveal()) || sign.HasControl(pass.Reveal()) {
			return errors.New("okx: credential: empty or invalid api_key, secret or passphrase")
		}
		out.Header.Set(HeaderKey, string(key.Reveal()))
		out.Header.Set(HeaderPassphrase, string(pass.Reveal()))
		out.Header.Set(HeaderTimestamp, ts)
		out.Header.Set(HeaderSign, Sign(sec.Reveal(), pre))
		return nil
	})
}

// ClientOrderIDField implements venue.Normalizer.
func (v *Venue) ClientOrderIDField() string { return "clOrdId" }

// Normalize implements venue.Normalizer for POST /api/v5/trade/order
// (JSON body: instId, side, ordType, sz, px, clOrdId, tgtCcy). A market
// order with tgtCcy quote_ccy gives sz as the notional.
func (v *Venue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	return ParseOrder(r.Body)
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
func (v *Venue) Allow(op string, now time.Time) (time.Duration, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if now.Before(v.until) {
		return v.until.Sub(now), false
	}
	limit := Limit(op)
	if start, ok := v.starts[op]; !ok || now.Sub(start) >= Window || now.Before(start) {
		v.starts[op], v.counts[op] = now, 0
	}
	if v.counts[op] >= limit-limit/20 {
		return v.starts[op].Add(Window).Sub(now), false
	}
	v.counts[op]++
	return 0, true
}

// Observe implements venue.RateLimiter: an HTTP 429 (OKX code 50011)
// starts a back-off of Retry-After seconds, or 2 seconds (one window).
func (v *Venue) Observe(resp *http.Response, now time.Time) {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		return
	}
	d := defaultBackoff
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 && s < 3600 {
		d = time.Duration(s) * time.Second
	}
	v.mu.Lock()
	if u := now.Add(d); u.After(v.until) {
		v.until = u
	}
	v.mu.Unlock()
}

var (
	_ venue.Venue        = (*Venue)(nil)
	_ venue.Normalizer   = (*Venue)(nil)
	_ venue.TokenCarrier = (*Venue)(nil)
	_ venue.RateLimiter  = (*Venue)(nil)
)
