package sandbox

// Coinbase Advanced Trade emulator. Every request carries Authorization:
// Bearer <jwt>: a compact JWS with header {"alg","kid","nonce","typ"} and
// claims {"sub","iss","nbf","exp","uri"}. The emulator accepts every claim
// set Coinbase accepts: iss "cdp" or the legacy "coinbase-cloud" (what
// ccxt and coinbase-advanced-py send with ES256 keys), an optional aud
// naming retail_rest_api_proxy or cdp_service, and the request as uri or
// among uris (ccxt's EdDSA tokens). It checks the signature (ES256 with
// r||s, or EdDSA, matching the credential's key), kid and sub equal to
// key_name, nbf <= now < exp with exp - nbf at most 120 s (5 s of clock
// skew allowed on nbf), the uri "METHOD host/path" of the request, and that
// no nonce is used twice while its JWT is valid. A refusal names the claim
// at fault.
// Refusals are HTTP 401 {"error":"UNAUTHENTICATED","message":...}; past
// CoinbaseLimit requests per second, HTTP 429 {"error":"RATE_LIMIT_EXCEEDED"}.
// Served: GET /api/v3/brokerage/market/products/{product_id} (public,
// unauthenticated: product_id and last price), GET /api/v3/brokerage/accounts,
// GET /api/v3/brokerage/products,
// POST /api/v3/brokerage/orders, POST /api/v3/brokerage/orders/batch_cancel,
// GET /api/v3/brokerage/orders/historical/batch,
// GET /api/v3/brokerage/key_permissions,
// GET /api/v3/brokerage/transaction_summary, GET /v2/accounts, and without
// authentication GET /api/v3/brokerage/time,
// /api/v3/brokerage/market/products, /api/v3/brokerage/market/products/{id}/ticker,
// /v2/currencies,
// /v2/currencies/crypto and /v2/exchange-rates. Credentials: key_name
// (organizations/{uuid}/apiKeys/{uuid}) and private_key (P-256 "EC PRIVATE
// KEY" PEM, generated unless given; an Ed25519 key as base64 of seed ||
// public or PKCS#8 PEM is accepted too).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Coinbase verification errors.
var (
	ErrCoinbaseMissing   = errors.New("sandbox: coinbase: missing bearer jwt")
	ErrCoinbaseMalformed = errors.New("sandbox: coinbase: malformed jwt")
	ErrCoinbaseAlg       = errors.New("sandbox: coinbase: wrong jwt algorithm")
	ErrCoinbaseKey       = errors.New("sandbox: coinbase: unknown key name")
	ErrCoinbaseIssuer    = errors.New("sandbox: coinbase: jwt issuer not accepted")
	ErrCoinbaseAudience  = errors.New("sandbox: coinbase: jwt audience not accepted")
	ErrCoinbaseSignature = errors.New("sandbox: coinbase: invalid jwt signature")
	ErrCoinbaseExpired   = errors.New("sandbox: coinbase: jwt expired, not yet valid or valid too long")
	ErrCoinbaseURI       = errors.New("sandbox: coinbase: jwt uri does not match the request")
	ErrCoinbaseNonce     = errors.New("sandbox: coinbase: jwt nonce reused")
)

// CoinbaseMaxLifetime is the longest exp - nbf the emulator accepts.
const CoinbaseMaxLifetime = 120 * time.Second

// CoinbaseLimit is how many authenticated requests per second it accepts.
const CoinbaseLimit = 30

// CoinbaseClaims are the JWT fields the emulator checks.
type CoinbaseClaims struct {
	Alg, Kid, Nonce, Typ string
	Sub, Iss, URI        string
	NBF, Exp             time.Time
}

// VerifyCoinbase checks the bearer JWT of a request for method, host
// (as on the request, e.g. api.coinbase.com) and escapedPath, signed by pub
// (*ecdsa.PublicKey or ed25519.PublicKey) for keyName. Nonce reuse is the
// caller's to check (the claims are returned).
func VerifyCoinbase(method, host, escapedPath string, headers http.Header, keyName string, pub crypto.PublicKey, now time.Time) (CoinbaseClaims, error) {
	var c CoinbaseClaims
	tok, ok := strings.CutPrefix(headers.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return c, ErrCoinbaseMissing
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, ErrCoinbaseMalformed
	}
	var hdr struct{ Alg, Kid, Nonce, Typ string }
	var cl struct {
		Sub, Iss, URI string
		URIs          []string        `json:"uris"`
		Aud           json.RawMessage `json:"aud"`
		NBF           *int64          `json:"nbf"`
		Exp           *int64          `json:"exp"`
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &cl) != nil {
		return c, ErrCoinbaseMalformed
	}
	if cl.NBF == nil || cl.Exp == nil || hdr.Nonce == "" {
		return c, ErrCoinbaseMalformed
	}
	c = CoinbaseClaims{Alg: hdr.Alg, Kid: hdr.Kid, Nonce: hdr.Nonce, Typ: hdr.Typ, Sub: cl.Sub, Iss: cl.Iss, URI: cl.URI,
		NBF: time.Unix(*cl.NBF, 0), Exp: time.Unix(*cl.Exp, 0)}
	input := []byte(parts[0] + "." + parts[1])
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if hdr.Alg != "ES256" {
			return c, ErrCoinbaseAlg
		}
		if len(sig) != 64 {
			return c, ErrCoinbaseSignature
		}
		sum := sha256.Sum256(input)
		if !ecdsa.Verify(k, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return c, ErrCoinbaseSignature
		}
	case ed25519.PublicKey:
		if hdr.Alg != "EdDSA" {
			return c, ErrCoinbaseAlg
		}
		if !ed25519.Verify(k, input, sig) {
			return c, ErrCoinbaseSignature
		}
	default:
		return c, ErrCoinbaseAlg
	}
	switch {
	case hdr.Kid != keyName:
		return c, fmt.Errorf("%w: header kid is not the key name", ErrCoinbaseKey)
	case cl.Sub != keyName:
		return c, fmt.Errorf("%w: claim sub is not the key name", ErrCoinbaseKey)
	case cl.Iss != "cdp" && cl.Iss != "coinbase-cloud":
		return c, fmt.Errorf("%w: iss %q (want cdp or coinbase-cloud)", ErrCoinbaseIssuer, cl.Iss)
	}
	if len(cl.Aud) > 0 && !coinbaseAudience(cl.Aud) {
		return c, fmt.Errorf("%w: aud %s (want retail_rest_api_proxy or cdp_service)", ErrCoinbaseAudience, cl.Aud)
	}
	switch {
	case !c.Exp.After(c.NBF):
		return c, fmt.Errorf("%w: exp is not after nbf", ErrCoinbaseExpired)
	case c.Exp.Sub(c.NBF) > CoinbaseMaxLifetime:
		return c, fmt.Errorf("%w: valid for %s, more than %s", ErrCoinbaseExpired, c.Exp.Sub(c.NBF), CoinbaseMaxLifetime)
	case now.Add(5 * time.Second).Before(c.NBF):
		return c, fmt.Errorf("%w: nbf is in the future", ErrCoinbaseExpired)
	case !now.Before(c.Exp):
		return c, fmt.Errorf("%w: expired", ErrCoinbaseExpired)
	}
	want := method + " " + host + escapedPath
	if cl.URI != want && !slices.Contains(cl.URIs, want) {
		return c, fmt.Errorf("%w: want %q", ErrCoinbaseURI, want)
	}
	if c.URI == "" && len(cl.URIs) > 0 {
		c.URI = want
	}
	return c, nil
}

// coinbaseAudience reports an aud claim (a string or an array of strings)
// naming one of Coinbase's REST audiences.
func coinbaseAudience(raw json.RawMessage) bool {
	var list []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(raw, &list) != nil {
		return false
	}
	return slices.Contains(list, "retail_rest_api_proxy") || slices.Contains(list, "cdp_service")
}

// parseCoinbaseKey reads a P-256 or Ed25519 private key.
func parseCoinbaseKey(s string) (crypto.Signer, error) {
	if blk, _ := pem.Decode([]byte(s)); blk != nil {
		if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil && k.Curve == elliptic.P256() {
			return k, nil
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err == nil {
			switch k := k.(type) {
			case *ecdsa.PrivateKey:
				if k.Curve == elliptic.P256() {
					return k, nil
				}
			case ed25519.PrivateKey:
				return k, nil
			}
		}
		return nil, fmt.Errorf("%w: coinbase private_key: unsupported pem key", ErrBadCredentials)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || (len(b) != ed25519.SeedSize && len(b) != ed25519.PrivateKeySize) {
		return nil, fmt.Errorf("%w: coinbase private_key must be a P-256 PEM or base64 Ed25519 key", ErrBadCredentials)
	}
	k := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	if len(b) == ed25519.PrivateKeySize && string(k) != string(b) {
		return nil, fmt.Errorf("%w: coinbase private_key: public half does not match seed", ErrBadCredentials)
	}
	return k, nil
}

type coinbase struct {
	vs      *venueServer
	keyName string
	keyText string
	key     crypto.Signer
	limit   *windowCounter

	mu     sync.Mutex
	nonces map[string]time.Time // nonce -> exp
}

func newCoinbase(vs *venueServer, creds map[string]string) (*coinbase, error) {
	c := &coinbase{vs: vs, keyName: creds["key_name"], keyText: creds["private_key"], nonces: map[string]time.Time{},
		limit: &windowCounter{window: time.Second, limit: CoinbaseLimit}}
	if c.keyName == "" {
		u, v := randHex(16), randHex(16)
		c.keyName = "organizations/" + u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:] +
			"/apiKeys/" + v[:8] + "-" + v[8:12] + "-" + v[12:16] + "-" + v[16:20] + "-" + v[20:]
	}
	if c.keyText == "" {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sandbox: coinbase key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("sandbox: coinbase key: %w", err)
		}
		c.keyText = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	k, err := parseCoinbaseKey(c.keyText)
	if err != nil {
		return nil, err
	}
	c.key = k
	return c, nil
}

func (c *coinbase) credentials() map[string]string {
	return map[string]string{"key_name": c.keyName, "private_key": c.keyText}
}
func (c *coinbase) credentialHeaders() []string { return []string{"Authorization"} }
func (c *coinbase) expireSessions()             {}

func coinbaseError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

// useNonce records a nonce until exp and reports whether it was fresh.
func (c *coinbase) useNonce(nonce string, exp, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, e := range c.nonces {
		if !now.Before(e) {
			delete(c.nonces, n)
		}
	}
	if _, seen := c.nonces[nonce]; seen {
		return false
	}
	c.nonces[nonce] = exp
	return true
}

// coinbasePrice is the emulator's last price of a product.
func coinbasePrice(id string) (string, bool) {
	switch id {
	case "BTC-USD":
		return "43250.12", true
	case "ETH-USD":
		return "2250.55", true
	}
	return "", false
}

func (c *coinbase) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	if id, ok := strings.CutPrefix(r.URL.Path, "/api/v3/brokerage/market/products/"); ok && r.Method == http.MethodGet && !strings.Contains(id, "/") {
		c.vs.count("market.product")
		price, known := coinbasePrice(id)
		if !known {
			coinbaseError(w, http.StatusNotFound, "NOT_FOUND", "product not found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"product_id": id, "price": price, "product_type": "SPOT", "status": "online"})
		return
	}
	ops := map[string]string{
		"GET /api/v3/brokerage/accounts":                "accounts",
		"GET /api/v3/brokerage/products":                "products",
		"POST /api/v3/brokerage/orders":                 "orders.create",
		"POST /api/v3/brokerage/orders/batch_cancel":    "orders.batch_cancel",
		"GET /api/v3/brokerage/orders/historical/batch": "orders.list",
		"GET /api/v3/brokerage/key_permissions":         "key_permissions",
		"GET /api/v3/brokerage/time":                    "time",
		"GET /api/v3/brokerage/market/products":         "market.products",
		"GET /api/v3/brokerage/transaction_summary":     "transaction_summary",
		"GET /v2/accounts":                              "v2.accounts",
		"GET /v2/currencies":                            "v2.currencies",
		"GET /v2/currencies/crypto":                     "v2.currencies_crypto",
		"GET /v2/exchange-rates":                        "v2.exchange_rates",
	}
	op, ok := ops[r.Method+" "+r.URL.Path]
	if product, found := strings.CutPrefix(r.URL.Path, "/api/v3/brokerage/market/products/"); !ok && r.Method == http.MethodGet && found {
		if product, ok = strings.CutSuffix(product, "/ticker"); ok && product != "" && !strings.Contains(product, "/") {
			op = "market.ticker"
		}
	}
	if !ok {
		c.vs.count("not_found")
		coinbaseError(w, http.StatusNotFound, "NOT_FOUND", "route not found")
		return
	}
	c.vs.count(op)
	now := c.vs.clock()
	if op == "time" {
		// Public: served without authentication, as Coinbase does.
		writeJSON(w, http.StatusOK, map[string]string{"iso": now.UTC().Format(time.RFC3339Nano),
			"epochSeconds": strconv.FormatInt(now.Unix(), 10), "epochMillis": strconv.FormatInt(now.UnixMilli(), 10)})
		return
	}
	if c.public(w, r, op) {
		return
	}
	cl, err := VerifyCoinbase(r.Method, r.Host, r.URL.EscapedPath(), r.Header, c.keyName, c.key.Public(), now)
	if err == nil && !c.useNonce(cl.Nonce, cl.Exp, now) {
		err = ErrCoinbaseNonce
	}
	if err != nil {
		c.vs.authFailure()
		msg := strings.TrimPrefix(err.Error(), "sandbox: coinbase: ")
		coinbaseError(w, http.StatusUnauthorized, "UNAUTHENTICATED", msg)
		return
	}
	if !c.limit.take(now) {
		w.Header().Set("Retry-After", "1")
		coinbaseError(w, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", "Too many requests")
		return
	}
	switch op {
	case "accounts":
		writeJSON(w, http.StatusOK, map[string]any{"accounts": c.accounts(), "has_next": false, "cursor": "", "size": 2})
	case "v2.accounts":
		writeJSON(w, http.StatusOK, map[string]any{"pagination": map[string]any{"ending_before": nil, "starting_after": nil,
			"limit": 25, "order": "desc", "previous_uri": nil, "next_uri": nil}, "data": c.accountsV2()})
	case "transaction_summary":
		writeJSON(w, http.StatusOK, map[string]any{"total_volume": 0, "total_fees": 0,
			"fee_tier": map[string]string{"pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "1000",
				"taker_fee_rate": "0.012", "maker_fee_rate": "0.006", "aop_from": "", "aop_to": ""},
			"margin_rate": nil, "goods_and_services_tax": nil, "advanced_trade_only_volume": 0,
			"advanced_trade_only_fees": 0, "coinbase_pro_volume": 0, "coinbase_pro_fees": 0, "total_balance": "",
			"has_promo_fee": false})
	case "products":
		writeJSON(w, http.StatusOK, map[string]any{"products": []any{
			map[string]string{"product_id": "BTC-USD", "price": "43250.12", "base_currency_id": "BTC", "quote_currency_id": "USD", "status": "online"},
			map[string]string{"product_id": "ETH-USD", "price": "2250.55", "base_currency_id": "ETH", "quote_currency_id": "USD", "status": "online"},
		}, "num_products": 2})
	case "key_permissions":
		writeJSON(w, http.StatusOK, map[string]any{"can_view": true, "can_trade": true, "can_transfer": false,
			"portfolio_uuid": "8bfc20d7-f7c6-4422-bf07-8243ca4169fe", "portfolio_type": "DEFAULT"})
	case "orders.create":
		c.create(w, body)
	case "orders.batch_cancel":
		var req struct {
			OrderIDs []string `json:"order_ids"`
		}
		if err := json.Unmarshal(body, &req); err != nil || len(req.OrderIDs) == 0 {
			coinbaseError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "order_ids required")
			return
		}
		res := []any{}
		for _, id := range req.OrderIDs {
			_, ok := c.vs.cancelOrder(id)
			item := map[string]any{"success": ok, "order_id": id, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON"}
			if !ok {
				item["failure_reason"] = "UNKNOWN_CANCEL_ORDER"
			}
			res = append(res, item)
		}
		writeJSON(w, http.StatusOK, map[string]any{"results": res})
	case "orders.list":
		// Every order, newest first, filtered by product_ids and
		// order_status (repeated or comma-separated, as Coinbase takes
		// them), paged with limit and cursor (has_next, cursor).
		q := r.URL.Query()
		products, statuses := coinbaseList(q["product_ids"]), coinbaseList(q["order_status"])
		limit, start := 1000, 0
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 {
				coinbaseError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "limit must be a positive integer")
				return
			}
			limit = n
		}
		if cur := q.Get("cursor"); cur != "" {
			n, err := strconv.Atoi(cur)
			if err != nil || n < 0 {
				coinbaseError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalid cursor")
				return
			}
			start = n
		}
		all := c.vs.ordersWhere(func(o *Order) bool { return len(products) == 0 || slices.Contains(products, o.Instrument) })
		var match []any
		for i := len(all) - 1; i >= 0; i-- {
			o, status := all[i], "OPEN"
			if o.Status == OrderCancelled {
				status = "CANCELLED"
			}
			if len(statuses) > 0 && !slices.Contains(statuses, status) {
				continue
			}
			match = append(match, map[string]any{"order_id": o.ID, "client_order_id": o.ClientOrderID, "product_id": o.Instrument,
				"side": strings.ToUpper(o.Side), "status": status})
		}
		res := []any{}
		for i := start; i < len(match) && len(res) < limit; i++ {
			res = append(res, match[i])
		}
		next, cursor := start+limit < len(match), ""
		if next {
			cursor = strconv.Itoa(start + limit)
		}
		writeJSON(w, http.StatusOK, map[string]any{"orders": res, "has_next": next, "cursor": cursor})
	}
}

// held is what open orders hold per currency (buys: price * size of
// the quote; sells: size of the base).
func (c *coinbase) held() map[string]float64 {
	out := map[string]float64{}
	for _, o := range c.vs.openOrders() {
		base, quote, _ := strings.Cut(o.Instrument, "-")
		p, _ := strconv.ParseFloat(o.Price, 64)
		v, _ := strconv.ParseFloat(o.Size, 64)
		if o.Side == "buy" {
			out[quote] += p * v
		} else {
			out[base] += v
		}
	}
	return out
}

// coinbaseWallets are the emulator's balances.
func coinbaseWallets() []struct{ id, name, currency, balance string } {
	return []struct{ id, name, currency, balance string }{
		{"8bfc20d7-f7c6-4422-bf07-8243ca4169fe", "USD Wallet", "USD", "100000.00"},
		{"b5f2a3c1-3b4e-4c1f-9b8e-2d1f0a9c7e61", "BTC Wallet", "BTC", "1.00000000"},
	}
}

// accounts is GET /api/v3/brokerage/accounts's list: available balance,
// hold (what open orders reserve) and type, as Coinbase documents them.
func (c *coinbase) accounts() []any {
	held := c.held()
	var out []any
	for _, wl := range coinbaseWallets() {
		typ := "ACCOUNT_TYPE_CRYPTO"
		if wl.currency == "USD" {
			typ = "ACCOUNT_TYPE_FIAT"
		}
		total, _ := strconv.ParseFloat(wl.balance, 64)
		h := held[wl.currency]
		out = append(out, map[string]any{
			"uuid": wl.id, "name": wl.name, "currency": wl.currency,
			"available_balance": map[string]string{"value": strconv.FormatFloat(total-h, 'f', -1, 64), "currency": wl.currency},
			"default":           wl.currency == "USD", "active": true, "created_at": "2024-01-01T00:00:00.000Z",
			"updated_at": "2024-01-01T00:00:00.000Z", "deleted_at": nil, "type": typ, "ready": true,
			"hold":                map[string]string{"value": strconv.FormatFloat(h, 'f', -1, 64), "currency": wl.currency},
			"retail_portfolio_id": "8bfc20d7-f7c6-4422-bf07-8243ca4169fe", "platform": "ACCOUNT_PLATFORM_CONSUMER",
		})
	}
	return out
}

// accountsV2 is GET /v2/accounts's data (Sign In With Coinbase accounts).
func (c *coinbase) accountsV2() []any {
	var out []any
	for _, wl := range coinbaseWallets() {
		typ := "crypto"
		if wl.currency == "USD" {
			typ = "fiat"
		}
		out = append(out, map[string]any{
			"id": wl.id, "name": wl.name, "primary": wl.currency == "BTC", "type": "wallet",
			"currency":   map[string]any{"code": wl.currency, "name": wl.currency, "type": typ, "exponent": 8},
			"balance":    map[string]string{"amount": wl.balance, "currency": wl.currency},
			"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "resource": "account",
			"resource_path": "/v2/accounts/" + wl.id, "allow_deposits": true, "allow_withdrawals": true,
		})
	}
	return out
}

// coinbaseProducts are the emulator's products, in Advanced Trade's shape.
func coinbaseProducts(productType string) []any {
	if productType != "" && productType != "SPOT" {
		return []any{}
	}
	var out []any
	for _, p := range [...][4]string{{"BTC-USD", "BTC", "43250.12", "0.00000001"}, {"ETH-USD", "ETH", "2250.55", "0.00000001"}} {
		out = append(out, map[string]any{
			"product_id": p[0], "price": p[2], "price_percentage_change_24h": "0.5", "volume_24h": "1000",
			"volume_percentage_change_24h": "1", "base_increment": p[3], "quote_increment": "0.01",
			"quote_min_size": "1", "quote_max_size": "150000000", "base_min_size": "0.00000001",
			"base_max_size": "3400", "base_name": p[1], "quote_name": "US Dollar", "watched": false,
			"is_disabled": false, "new": false, "status": "online", "cancel_only": false, "limit_only": false,
			"post_only": false, "trading_disabled": false, "auction_mode": false, "product_type": "SPOT",
			"quote_currency_id": "USD", "base_currency_id": p[1], "fcm_trading_session_details": nil,
			"mid_market_price": "", "alias": "", "alias_to": []string{}, "base_display_symbol": p[1],
			"quote_display_symbol": "USD", "view_only": false, "price_increment": "0.01",
		})
	}
	return out
}

// public answers the routes Coinbase serves without authentication; it
// reports whether op was one.
func (c *coinbase) public(w http.ResponseWriter, r *http.Request, op string) bool {
	switch op {
	case "market.ticker":
		// Get Public Market Trades: the last trades and the best bid and ask.
		product := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v3/brokerage/market/products/"), "/ticker")
		now := c.vs.clock().UTC().Format(time.RFC3339Nano)
		writeJSON(w, http.StatusOK, map[string]any{"trades": []any{map[string]string{
			"trade_id": "34b080bf-fcfd-445a-832b-46b5ddc65601", "product_id": product, "price": "43250.12", "size": "0.01",
			"time": now, "side": "BUY", "bid": "", "ask": "",
		}}, "best_bid": "43250.11", "best_ask": "43250.13"})
	case "market.products":
		p := coinbaseProducts(r.URL.Query().Get("product_type"))
		writeJSON(w, http.StatusOK, map[string]any{"products": p, "num_products": len(p)})
	case "v2.currencies":
		writeJSON(w, http.StatusOK, map[string]any{"data": []any{
			map[string]string{"id": "USD", "name": "US Dollar", "min_size": "0.01"},
			map[string]string{"id": "EUR", "name": "Euro", "min_size": "0.01"},
		}})
	case "v2.currencies_crypto":
		writeJSON(w, http.StatusOK, map[string]any{"data": []any{
			map[string]any{"asset_id": "5b71fc48-3dd3-540c-809b-f8c94d0e68b5", "code": "BTC", "name": "Bitcoin",
				"color": "#F7931A", "sort_index": 100, "exponent": 8, "type": "crypto", "address_regex": "^([13][a-km-zA-HJ-NP-Z1-9]{25,34})|^(bc1[qzry9x8gf2tvdw0s3jn54khce6mua7l]([qpzry9x8gf2tvdw0s3jn54khce6mua7l]{38}|[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}))$"},
			map[string]any{"asset_id": "d85dce9b-5b73-5c3c-8978-522ce1d1c1b4", "code": "ETH", "name": "Ethereum",
				"color": "#627EEA", "sort_index": 102, "exponent": 8, "type": "crypto", "address_regex": "^(?:0x)?[0-9a-fA-F]{40}$"},
		}})
	case "v2.exchange_rates":
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"currency": "USD",
			"rates": map[string]string{"USD": "1.0", "EUR": "0.92", "BTC": "0.0000231213", "ETH": "0.000444335"}}})
	default:
		return false
	}
	return true
}

func (c *coinbase) create(w http.ResponseWriter, body []byte) {
	var req struct {
		ClientOrderID string                    `json:"client_order_id"`
		ProductID     string                    `json:"product_id"`
		Side          string                    `json:"side"`
		Config        map[string]map[string]any `json:"order_configuration"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.ClientOrderID == "" || req.ProductID == "" ||
		(req.Side != "BUY" && req.Side != "SELL") || len(req.Config) != 1 {
		writeJSON(w, http.StatusOK, map[string]any{"success": false, "error_response": map[string]string{
			"error": "INVALID_ARGUMENT", "message": "client_order_id, product_id, side and one order_configuration are required",
		}})
		return
	}
	var size, price string
	for _, cfg := range req.Config {
		size, price = fmt.Sprint(cfg["base_size"]), fmt.Sprint(cfg["limit_price"])
		if cfg["base_size"] == nil {
			size = fmt.Sprint(cfg["quote_size"])
		}
		if cfg["limit_price"] == nil {
			price = ""
		}
	}
	for _, o := range c.vs.openOrders() {
		if o.ClientOrderID == req.ClientOrderID { // Coinbase answers a repeated client_order_id with the first order
			writeJSON(w, http.StatusOK, map[string]any{"success": true, "success_response": map[string]string{
				"order_id": o.ID, "product_id": o.Instrument, "side": req.Side, "client_order_id": o.ClientOrderID,
			}})
			return
		}
	}
	o := c.vs.addOrder("cb-", Order{ClientOrderID: req.ClientOrderID, Instrument: req.ProductID, Side: strings.ToLower(req.Side), Price: price, Size: size})
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "success_response": map[string]string{
		"order_id": o.ID, "product_id": o.Instrument, "side": req.Side, "client_order_id": o.ClientOrderID,
	}, "order_configuration": req.Config})
}

// coinbaseList splits repeated and comma-separated query values.
func coinbaseList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

var _ emulator = (*coinbase)(nil)
