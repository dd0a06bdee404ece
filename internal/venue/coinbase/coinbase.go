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
	"strings"
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
	{Method: "GET", Path: "/api/v3/brokerage/market/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/brokerage/best_bid_ask", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/product_book", Op: venue.OpMarketRead},
	{Method: "GET", Path: "/api/v3/brokerage/time", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/brokerage/accounts", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/accounts/{id}", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/portfolios", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/transaction_summary", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/key_permissions", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/brokerage/orders/historical/*", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/api/v3/brokerage/orders", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/brokerage/orders/batch_cancel", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/api/v3/brokerage/portfolios/move_funds", Op: venue.OpWalletTransfer},
	// Sign In With Coinbase (v2) market data, which ccxt's loadMarkets
	// reads for currencies, and accounts.
	{Method: "GET", Path: "/v2/currencies", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/v2/currencies/crypto", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/v2/exchange-rates", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/v2/time", Op: venue.OpMarketRead, Auth: venue.AuthNone},
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
	venue.Kit
	creds venue.Credentials
	now   func() time.Time
	rl    venue.WindowLimiter // classes "public" and "private", per second
}

// New returns a Coinbase venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("coinbase: no credentials")
	}
	v := &Venue{Kit: venue.Kit{Routes: Operations, Credentials: append([]string{"Authorization"}, legacyHeaders()...), ClientID: clientID()},
		creds: o.Credentials, now: o.Now, rl: venue.WindowLimiter{Window: time.Second, Limit: classLimit,
			Backoff: time.Second, MaxBackoff: 10 * time.Minute}}
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

// legacyHeaders are the headers of Coinbase's legacy API-key HMAC scheme,
// which ccxt uses when its secret is not a PEM key (a placeholder): never
// forwarded, whatever they hold.
func legacyHeaders() []string {
	return []string{"CB-ACCESS-KEY", "CB-ACCESS-SIGN", "CB-ACCESS-TIMESTAMP", "CB-ACCESS-PASSPHRASE"}
}

// maxJWT bounds the bearer JWT BotToken will decode.
const maxJWT = 8 << 10

// BotToken implements venue.TokenCarrier: an official SDK configured with
// the kst_ token as key name sends it as the sub (and kid) of its bearer
// JWT. The JWT is decoded, not verified.
func (v *Venue) BotToken(h http.Header, _ string) (string, bool) {
	// ccxt with a non-PEM secret signs the legacy way: the key in
	// CB-ACCESS-KEY.
	if k := strings.TrimSpace(h.Get("CB-ACCESS-KEY")); strings.HasPrefix(k, "kst_") {
		return k, true
	}
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
	for _, h := range v.CredentialHeaders() {
		out.Header.Del(h)
	}
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
		f, err := venue.CredentialFields(c, FieldKeyName, FieldPrivateKey)
		if err != nil {
			return fmt.Errorf("coinbase: %w", err)
		}
		name, key := f[0], f[1]
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

// Public reports the routes Coinbase serves without authentication:
// GET /api/v3/brokerage/market/*, /api/v3/brokerage/time and the v2
// market data (/v2/currencies, /v2/currencies/crypto, /v2/exchange-rates,
// /v2/time). keystile forwards them unsigned. (The authenticated twins
// under /api/v3/brokerage/products are market.read too, but signed.)
func Public(method, escapedPath string) bool { return Operations.Public(method, escapedPath) }

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
	class := "private"
	if op == venue.OpMarketRead {
		class = "public"
	}
	return v.rl.Allow(class, now)
}

// classLimit is the per-second limit of a class of requests.
func classLimit(class string) int {
	if class == "public" {
		return PublicLimit
	}
	return PrivateLimit
}

// Observe implements venue.RateLimiter: HTTP 429 starts a back-off of
// Retry-After seconds (at most 10 minutes), or 1 second.
func (v *Venue) Observe(resp *http.Response, now time.Time) { v.rl.Observe(resp, now) }

// ShareLimits implements venue.LimitSharer: Coinbase sends no usage
// headers, so each of n replicas on one API key counts its own requests
// against 1/n of every limit.
func (v *Venue) ShareLimits(n int) { v.rl.ShareLimits(n) }

var (
	_ venue.Venue        = (*Venue)(nil)
	_ venue.Normalizer   = (*Venue)(nil)
	_ venue.TokenCarrier = (*Venue)(nil)
	_ venue.RateLimiter  = (*Venue)(nil)
	_ venue.LimitSharer  = (*Venue)(nil)
)
