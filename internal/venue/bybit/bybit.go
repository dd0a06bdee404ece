package bybit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	FieldAPIKey = "api_key"
	FieldSecret = "secret"
)

// Request headers.
const (
	HeaderKey        = "X-BAPI-API-KEY"
	HeaderTimestamp  = "X-BAPI-TIMESTAMP"
	HeaderRecvWindow = "X-BAPI-RECV-WINDOW"
	HeaderSign       = "X-BAPI-SIGN"
	HeaderSignType   = "X-BAPI-SIGN-TYPE"
)

// Rate-limit response headers.
const (
	HeaderLimit       = "X-Bapi-Limit"
	HeaderLimitStatus = "X-Bapi-Limit-Status"
	HeaderLimitReset  = "X-Bapi-Limit-Reset-Timestamp"
)

// DefaultRecvWindow is the receive window used when Options.RecvWindow is 0.
const DefaultRecvWindow = 5 * time.Second

// ErrMalformedOrder reports an order placement keystile cannot read.
var ErrMalformedOrder = errors.New("bybit: malformed order")

// Operations is Bybit's operations table.
var Operations = venue.Table{
	{Method: "GET", Path: "/v5/market/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/v5/account/wallet-balance", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v5/account/info", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v5/account/fee-rate", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v5/position/list", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v5/asset/transfer/query-account-coins-balance", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v5/asset/coin/query-info", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v5/order/realtime", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/v5/order/history", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/v5/execution/list", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/v5/order/create", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/v5/order/cancel", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/v5/order/cancel-all", Op: venue.OpOrderCancelAll},
	{Method: "POST", Path: "/v5/asset/withdraw/create", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/v5/asset/withdraw/cancel", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/v5/asset/transfer/inter-transfer", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/v5/asset/transfer/universal-transfer", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/v5/user/update-api", Op: venue.OpAPIKeyManage},
	{Method: "POST", Path: "/v5/user/update-sub-api", Op: venue.OpAPIKeyManage},
	{Method: "POST", Path: "/v5/user/create-sub-api", Op: venue.OpAPIKeyManage},
	{Method: "POST", Path: "/v5/user/delete-api", Op: venue.OpAPIKeyManage},
	{Method: "GET", Path: "/v5/user/query-api", Op: venue.OpAccountRead}, // reads the key's own permissions
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required: api_key, secret
	Now         func() time.Time  // if nil, time.Now
	RecvWindow  time.Duration     // if 0, DefaultRecvWindow; at most 60 s
}

// Venue is a Bybit venue. It is safe for concurrent use.
type Venue struct {
	venue.Kit
	creds  venue.Credentials
	now    func() time.Time
	window string

	mu      sync.Mutex
	blocked map[string]time.Time // op -> until
	until   time.Time            // every op
}

// New returns a Bybit venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("bybit: no credentials")
	}
	if o.RecvWindow == 0 {
		o.RecvWindow = DefaultRecvWindow
	}
	if o.RecvWindow < time.Millisecond || o.RecvWindow > time.Minute {
		return nil, fmt.Errorf("bybit: recv window %s out of range (1ms..60s)", o.RecvWindow)
	}
	v := &Venue{Kit: venue.Kit{Routes: Operations, KeyHeader: HeaderKey,
		Credentials: []string{HeaderKey, HeaderTimestamp, HeaderRecvWindow, HeaderSign, HeaderSignType}, ClientID: clientID()},
		creds: o.Credentials, now: o.Now, window: strconv.FormatInt(o.RecvWindow.Milliseconds(), 10), blocked: map[string]time.Time{}}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// PublicHeaders implements venue.PublicHeaders: the timestamp, receive
// window and signature type are not secret (the key and the signature are).
func (v *Venue) PublicHeaders() []string {
	return []string{HeaderTimestamp, HeaderRecvWindow, HeaderSignType}
}

// Payload returns what Bybit signs after timestamp, key and window: the raw
// query for GET and DELETE, the body otherwise.
func Payload(method, rawQuery string, body []byte) []byte {
	if method == http.MethodGet || method == http.MethodDelete {
		return []byte(rawQuery)
	}
	return body
}

// Sign returns hex(HMAC-SHA256(secret, timestamp + apiKey + recvWindow + payload)).
func Sign(secretKey []byte, timestamp, apiKey, recvWindow string, payload []byte) string {
	m := hmac.New(sha256.New, secretKey)
	m.Write([]byte(timestamp))
	m.Write([]byte(apiKey))
	m.Write([]byte(recvWindow))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// Public reports the routes Bybit serves without authentication (GET
// /v5/market/*): keystile forwards them unsigned.
func Public(method, escapedPath string) bool { return Operations.Public(method, escapedPath) }

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	for _, h := range v.CredentialHeaders() {
		out.Header.Del(h)
	}
	if Public(out.Method, out.URL.EscapedPath()) {
		// Public market data: nothing to sign, no key to reveal.
		return nil
	}
	ts := strconv.FormatInt(v.now().UnixMilli(), 10)
	payload := Payload(out.Method, out.URL.RawQuery, body)
	return v.creds(ctx, func(c venue.Credential) error {
		f, err := venue.CredentialFields(c, FieldAPIKey, FieldSecret)
		if err != nil {
			return fmt.Errorf("bybit: %w", err)
		}
		key, sec := f[0], f[1]
		if sign.HasControl(key.Reveal()) {
			return errors.New("bybit: credential: api_key holds control characters")
		}
		k := string(key.Reveal())
		out.Header.Set(HeaderKey, k)
		out.Header.Set(HeaderTimestamp, ts)
		out.Header.Set(HeaderRecvWindow, v.window)
		out.Header.Set(HeaderSignType, "2")
		out.Header.Set(HeaderSign, Sign(sec.Reveal(), ts, k, v.window, payload))
		return nil
	})
}

// Normalize implements venue.Normalizer for POST /v5/order/create.
func (v *Venue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	return ParseOrder(r.Body)
}

// ParseOrder reads a /v5/order/create body as Bybit executes it (its
// documented orderType, qty, marketUnit and triggerPrice semantics):
//
//   - Limit: qty at price. Market: at the market; "Market order will
//     ignore" price.
//   - spot Market qty: a buy in quote (by value) and a sell in base by
//     default; marketUnit baseCoin or quoteCoin changes that for unified
//     accounts only (classic accounts ignore it), so an explicit unit that
//     differs from the default keeps both readings and the larger charge
//     applies.
//   - linear and inverse: qty in base coin (inverse contracts are 1 USD
//     each, so this overcounts them; qty "0" closes a whole position and is
//     refused by a policy that needs the order's notional).
//   - option: qty contracts priced by a premium or an implied volatility:
//     counted as contracts (no notional); orderIv with a price is refused.
//   - triggerPrice makes it a conditional order: judged at the worse of
//     the trigger and the execution price.
func ParseOrder(body []byte) (*venue.Order, error) {
	f, err := venue.JSONFields(body, "category", "symbol", "side", "orderType", "qty", "price", "orderLinkId", "marketUnit", "triggerPrice", "orderIv")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
	category, qty, price, unit := f[0], f[4], f[5], f[7]
	o := &venue.Order{Instrument: f[1], Side: strings.ToLower(f[2]), Type: strings.ToLower(f[3]), ClientOrderID: f[6], TriggerPrice: f[8]}
	switch {
	case o.Instrument == "":
		return nil, fmt.Errorf("%w: no symbol", ErrMalformedOrder)
	case o.Side != "buy" && o.Side != "sell":
		return nil, fmt.Errorf("%w: side must be Buy or Sell", ErrMalformedOrder)
	case o.Type != "market" && o.Type != "limit":
		return nil, fmt.Errorf("%w: orderType must be Market or Limit", ErrMalformedOrder)
	case qty == "":
		return nil, fmt.Errorf("%w: no qty", ErrMalformedOrder)
	}
	if o.Type == "market" {
		o.Market = true
	} else {
		o.Price = price
	}
	switch category {
	case "spot":
		if o.Type != "market" {
			o.Quantity = qty
			return o, nil
		}
		base, quote := o.Side == "sell", o.Side == "buy"
		switch unit {
		case "":
		case "baseCoin":
			base = true
		case "quoteCoin":
			quote = true
		default:
			return nil, fmt.Errorf("%w: marketUnit %q", ErrMalformedOrder, unit)
		}
		if base {
			o.Quantity = qty
		}
		if quote {
			o.Notional = qty
		}
	case "linear", "inverse":
		o.Quantity = qty
	case "option":
		if f[9] != "" {
			return nil, fmt.Errorf("%w: an option priced by orderIv", ErrMalformedOrder)
		}
		o.Quantity, o.Contracts = qty, true
	default:
		return nil, fmt.Errorf("%w: category %q", ErrMalformedOrder, category)
	}
	return o, nil
}

// Allow implements venue.RateLimiter.
func (v *Venue) Allow(op string, now time.Time) (time.Duration, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	until := v.until
	if u := v.blocked[op]; u.After(until) {
		until = u
	}
	if now.Before(until) {
		return until.Sub(now), false
	}
	return 0, true
}

// maxBlock bounds a back-off taken from a response header.
const maxBlock = 10 * time.Minute

// Observe implements venue.RateLimiter: it reads Bybit's usage headers
// (per operation) and HTTP 429.
func (v *Venue) Observe(resp *http.Response, now time.Time) {
	if resp == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if resp.StatusCode == http.StatusTooManyRequests {
		if u := now.Add(venue.RetryAfter(resp, time.Second, maxBlock)); u.After(v.until) {
			v.until = u
		}
	}
	limit, err1 := strconv.Atoi(resp.Header.Get(HeaderLimit))
	left, err2 := strconv.Atoi(resp.Header.Get(HeaderLimitStatus))
	if err1 != nil || err2 != nil || limit <= 0 || resp.Request == nil || resp.Request.URL == nil {
		return
	}
	op, ok := Operations.Lookup(resp.Request.Method, resp.Request.URL.Path)
	if !ok || left*20 > limit {
		return
	}
	until := now.Add(time.Second) // Bybit windows are 1 s when no reset is given
	if ms, err := strconv.ParseInt(resp.Header.Get(HeaderLimitReset), 10, 64); err == nil {
		if t := time.UnixMilli(ms); t.After(now) {
			until = t
		}
	}
	if until.Sub(now) > maxBlock {
		until = now.Add(maxBlock)
	}
	if until.After(v.blocked[op]) {
		v.blocked[op] = until
	}
}

var (
	_ venue.Venue          = (*Venue)(nil)
	_ venue.Normalizer     = (*Venue)(nil)
	_ venue.TokenCarrier   = (*Venue)(nil)
	_ venue.RateLimiter    = (*Venue)(nil)
	_ venue.AnswerObserver = (*Venue)(nil)
)
