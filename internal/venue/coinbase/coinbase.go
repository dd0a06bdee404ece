package coinbase

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
	FieldKeyName    = "key_name"
	FieldPrivateKey = "private_key"
)

// JWT parameters.
const (
	Issuer   = "cdp"
	Lifetime = 120 * time.Second
)

// Published request limits per second.
const (
	PrivateLimit = 30
	PublicLimit  = 10
)

// ErrMalformedOrder reports an order placement keystile cannot read.
var ErrMalformedOrder = errors.New("coinbase: malformed order")

// Operations is the Advanced Trade operations table (wallet endpoints of the
// v2 API included). POST /v2/accounts/{id}/transactions is refined by
// Classify from its body.
var Operations = venue.Table{
	{Method: "GET", Path: "/api/v3/brokerage/products", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/products/*", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/market/*", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/best_bid_ask", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/product_book", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/time", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/accounts", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/accounts/{id}", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/portfolios", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/transaction_summary", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/key_permissions", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/orders/historical/*", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/api/v3/brokerage/orders", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/brokerage/orders/batch_cancel", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/api/v3/brokerage/portfolios/move_funds", Op: venue.OpWalletTransfer},
	{Method: "GET", Path: "/v2/accounts", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/v2/accounts/*", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/v2/accounts/{id}/transactions", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/v2/accounts/{id}/withdrawals", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/v2/accounts/{id}/withdrawals/{wid}/commit", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/v2/accounts/{id}/deposits", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/v2/accounts/{id}/deposits/{did}/commit", Op: venue.OpWalletTransfer},
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required: key_name, private_key
	Now         func() time.Time  // if nil, time.Now
}

// Venue is a Coinbase Advanced Trade venue. It is safe for concurrent use.
type Venue struct {
	creds venue.Credentials
	now   func() time.Time

	mu     sync.Mutex
	counts map[bool]int // public? -> requests in the current second
	starts map[bool]time.Time
	until  time.Time
}

// New returns a Coinbase venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("coinbase: no credentials")
	}
	v := &Venue{creds: o.Credentials, now: o.Now, counts: map[bool]int{}, starts: map[bool]time.Time{}}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Classify implements venue.Venue.
func (v *Venue) Classify(r *venue.Request) (string, bool) {
	op, ok := Operations.Lookup(r.Method, r.Path)
	if ok && op == venue.OpWalletWithdraw && r.Method == http.MethodPost && strings.HasSuffix(strings.TrimRight(r.Path, "/"), "/transactions") {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(r.Body, &t) == nil && t.Type == "transfer" {
			return venue.OpWalletTransfer, true
		}
	}
	return op, ok
}

// CredentialHeaders implements venue.Venue.
func (v *Venue) CredentialHeaders() []string { return []string{"Authorization"} }

// maxJWT bounds the bearer JWT BotToken will decode.
const maxJWT = 8 << 10

// BotToken implements venue.TokenCarrier: an official SDK configured with
// the kst_ token as key name sends it as the sub (and kid) of its bearer
// JWT. The JWT is decoded, not verified.
func (v *Venue) BotToken(h http.Header, _ string) (string, bool) {
	auth := h.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || len(tok) > maxJWT || strings.HasPrefix(tok, "kst_") {
		return "", false
	}
	hdr, claims, ok := DecodeJWT(tok)
	if !ok {
		return "", false
	}
	for _, s := range []any{claims["sub"], hdr["kid"]} {
		if s, ok := s.(string); ok && strings.HasPrefix(s, "kst_") {
			return s, true
		}
	}
	return "", false
}

// DecodeJWT decodes (without verifying) the header and claims of a compact
// JWS.
func DecodeJWT(tok string) (header, claims map[string]any, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil || *dst == nil {
			return nil, nil, false
		}
	}
	return header, claims, true
}

// URI returns the uri claim for a request: "METHOD host/path".
func URI(method, host, escapedPath string) string {
	return strings.ToUpper(method) + " " + host + escapedPath
}

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, _ []byte) error {
	out.Header.Del("Authorization")
	if Public(out.Method, out.URL.EscapedPath()) {
		// Public market data: no JWT, no key name revealed.
		return nil
	}
	host := out.Host
	if host == "" {
		host = out.URL.Host
	}
	nb := make([]byte, 16)
	_, _ = rand.Read(nb) // crypto/rand.Read never fails (Go 1.24+)
	now := v.now().Unix()
	uri := URI(out.Method, host, out.URL.EscapedPath())
	return v.creds(ctx, func(c venue.Credential) error {
		name, err := c.Field(FieldKeyName)
		if err != nil {
			return fmt.Errorf("coinbase: credential: %w", err)
		}
		key, err := c.Field(FieldPrivateKey)
		if err != nil {
			return fmt.Errorf("coinbase: credential: %w", err)
		}
		if name.IsZero() {
			return errors.New("coinbase: credential: empty key_name")
		}
		alg, err := sign.JWTKeyAlg(key)
		if err != nil {
			return fmt.Errorf("coinbase: private_key: %w", err)
		}
		kid := string(name.Reveal())
		jwt, err := sign.JWT(alg, key,
			map[string]any{"kid": kid, "nonce": hex.EncodeToString(nb), "typ": "JWT"},
			map[string]any{"sub": kid, "iss": Issuer, "nbf": now, "exp": now + int64(Lifetime/time.Second), "uri": uri})
		if err != nil {
			return fmt.Errorf("coinbase: %w", err)
		}
		out.Header.Set("Authorization", "Bearer "+jwt)
		return nil
	})
}

// Public reports the routes Advanced Trade serves without authentication:
// GET /api/v3/brokerage/market/* and /api/v3/brokerage/time. keystile
// forwards them unsigned. (The authenticated twins under
// /api/v3/brokerage/products are market.read too, but signed.)
func Public(method, escapedPath string) bool {
	if method != http.MethodGet {
		return false
	}
	p := strings.TrimRight(escapedPath, "/")
	return strings.HasPrefix(p, "/api/v3/brokerage/market/") || p == "/api/v3/brokerage/time"
}

// ClientOrderIDField implements venue.Normalizer.
func (v *Venue) ClientOrderIDField() string { return "client_order_id" }

// Normalize implements venue.Normalizer for POST /api/v3/brokerage/orders.
func (v *Venue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	return ParseOrder(r.Body)
}

// orderConfig describes an order_configuration member: the order type
// keystile reports, whether it executes at the market, and which fields
// hold its limit and trigger prices.
type orderConfig struct {
	typ            string
	market         bool
	limit, trigger string
}

// orderConfigs are the documented order_configuration members.
var orderConfigs = map[string]orderConfig{
	"market_market_ioc":         {typ: "market", market: true},
	"market_market_fok":         {typ: "market", market: true},
	"sor_limit_ioc":             {typ: "limit", limit: "limit_price"},
	"limit_limit_gtc":           {typ: "limit", limit: "limit_price"},
	"limit_limit_gtd":           {typ: "limit", limit: "limit_price"},
	"limit_limit_fok":           {typ: "limit", limit: "limit_price"},
	"twap_limit_gtd":            {typ: "twap", limit: "limit_price"},
	"stop_limit_stop_limit_gtc": {typ: "stop_limit", limit: "limit_price", trigger: "stop_price"},
	"stop_limit_stop_limit_gtd": {typ: "stop_limit", limit: "limit_price", trigger: "stop_price"},
	"trigger_bracket_gtc":       {typ: "bracket", limit: "limit_price", trigger: "stop_trigger_price"},
	"trigger_bracket_gtd":       {typ: "bracket", limit: "limit_price", trigger: "stop_trigger_price"},
}

// ParseOrder reads a create-order body as Coinbase executes it:
// product_id, side (BUY/SELL), client_order_id and an order_configuration
// with exactly one documented member. Its size is base_size or quote_size
// (both at once is refused: which one Coinbase reads is not documented);
// a market configuration executes at the market (any price in it is no
// field of it and is ignored); limit configurations fill at limit_price,
// stop-limit and bracket ones once stop_price / stop_trigger_price is
// reached (the worse of the two is charged). Keys are matched exactly, and
// one spelt in another letter case, or given twice, is refused.
func ParseOrder(body []byte) (*venue.Order, error) {
	top, err := venue.JSONObject(body, "product_id", "side", "client_order_id", "order_configuration")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedOrder, err)
	}
	var f [3]string
	for i, k := range []string{"product_id", "side", "client_order_id"} {
		if f[i], err = venue.JSONScalar(top[k]); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformedOrder, k, err)
		}
	}
	o := &venue.Order{Instrument: f[0], Side: strings.ToLower(f[1]), ClientOrderID: f[2]}
	var cfgs map[string]json.RawMessage
	if raw, ok := top["order_configuration"]; ok {
		if cfgs, err = venue.JSONObject(raw); err != nil {
			return nil, fmt.Errorf("%w: order_configuration: %w", ErrMalformedOrder, err)
		}
	}
	switch {
	case o.Instrument == "":
		return nil, fmt.Errorf("%w: no product_id", ErrMalformedOrder)
	case o.Side != "buy" && o.Side != "sell":
		return nil, fmt.Errorf("%w: side must be BUY or SELL", ErrMalformedOrder)
	case len(cfgs) != 1:
		return nil, fmt.Errorf("%w: order_configuration needs exactly one member", ErrMalformedOrder)
	}
	for name, raw := range cfgs {
		c, ok := orderConfigs[name]
		if !ok {
			return nil, fmt.Errorf("%w: unknown order_configuration", ErrMalformedOrder)
		}
		v, err := venue.JSONFields(raw, "base_size", "quote_size", "limit_price", "stop_price", "stop_trigger_price")
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformedOrder, name, err)
		}
		field := map[string]string{"limit_price": v[2], "stop_price": v[3], "stop_trigger_price": v[4]}
		o.Type, o.Market, o.Quantity, o.Notional = c.typ, c.market, v[0], v[1]
		if c.limit != "" {
			o.Price = field[c.limit]
		}
		if c.trigger != "" {
			o.TriggerPrice = field[c.trigger]
		}
	}
	switch {
	case o.Quantity == "" && o.Notional == "":
		return nil, fmt.Errorf("%w: no base_size or quote_size", ErrMalformedOrder)
	case o.Quantity != "" && o.Notional != "":
		return nil, fmt.Errorf("%w: both base_size and quote_size", ErrMalformedOrder)
	}
	return o, nil
}

// Allow implements venue.RateLimiter: it refuses while a back-off is active
// and within 5% of the per-second limit (market.read counts against
// PublicLimit, everything else against PrivateLimit).
func (v *Venue) Allow(op string, now time.Time) (time.Duration, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if now.Before(v.until) {
		return v.until.Sub(now), false
	}
	public := op == venue.OpMarketRead
	limit := PrivateLimit
	if public {
		limit = PublicLimit
	}
	if s, ok := v.starts[public]; !ok || now.Sub(s) >= time.Second || now.Before(s) {
		v.starts[public], v.counts[public] = now, 0
	}
	if v.counts[public] >= limit-limit/20 {
		return v.starts[public].Add(time.Second).Sub(now), false
	}
	v.counts[public]++
	return 0, true
}

// Observe implements venue.RateLimiter: HTTP 429 starts a back-off of
// Retry-After seconds (at most 10 minutes), or 1 second.
func (v *Venue) Observe(resp *http.Response, now time.Time) {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		return
	}
	d := time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		d = min(time.Duration(s)*time.Second, 10*time.Minute)
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
