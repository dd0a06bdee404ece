package sandbox

// Coinbase Advanced Trade emulator. Every request carries Authorization:
// Bearer <jwt>: a compact JWS with header {"alg","kid","nonce","typ"} and
// claims {"sub","iss","nbf","exp","uri"}. The emulator checks the signature
// (ES256 with r||s, or EdDSA, matching the credential's key), kid and sub
// equal to key_name, iss "cdp", nbf <= now < exp with exp - nbf at most
// 120 s (5 s of clock skew allowed on nbf), uri exactly "METHOD host/path"
// of the request, and that no nonce is used twice while its JWT is valid.
// Refusals are HTTP 401 {"error":"UNAUTHENTICATED","message":...}; past
// CoinbaseLimit requests per second, HTTP 429 {"error":"RATE_LIMIT_EXCEEDED"}.
// Served: GET /api/v3/brokerage/market/products/{product_id} (public,
// unauthenticated: product_id and last price), GET /api/v3/brokerage/accounts,
// GET /api/v3/brokerage/products,
// POST /api/v3/brokerage/orders, POST /api/v3/brokerage/orders/batch_cancel,
// GET /api/v3/brokerage/orders/historical/batch,
// GET /api/v3/brokerage/key_permissions, and the public GET
// /api/v3/brokerage/time (no authentication). Credentials: key_name
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
		NBF           *int64 `json:"nbf"`
		Exp           *int64 `json:"exp"`
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
	if hdr.Kid != keyName || cl.Sub != keyName || cl.Iss != "cdp" {
		return c, ErrCoinbaseKey
	}
	if !c.Exp.After(c.NBF) || c.Exp.Sub(c.NBF) > CoinbaseMaxLifetime || now.Add(5*time.Second).Before(c.NBF) || !now.Before(c.Exp) {
		return c, ErrCoinbaseExpired
	}
	if cl.URI != method+" "+host+escapedPath {
		return c, ErrCoinbaseURI
	}
	return c, nil
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
	if id, ok := strings.CutPrefix(r.URL.Path, "/api/v3/brokerage/market/products/"); ok && r.Method == http.MethodGet {
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
	}
	op, ok := ops[r.Method+" "+r.URL.Path]
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
		writeJSON(w, http.StatusOK, map[string]any{"accounts": []any{
			map[string]any{"uuid": "8bfc20d7-f7c6-4422-bf07-8243ca4169fe", "name": "USD Wallet", "currency": "USD",
				"available_balance": map[string]string{"value": "100000.00", "currency": "USD"}, "active": true},
			map[string]any{"uuid": "b5f2a3c1-3b4e-4c1f-9b8e-2d1f0a9c7e61", "name": "BTC Wallet", "currency": "BTC",
				"available_balance": map[string]string{"value": "1.00000000", "currency": "BTC"}, "active": true},
		}, "has_next": false, "cursor": "", "size": 2})
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
