package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// Generic ("BetPro Exchange") verification errors.
var (
	ErrGenericMissing   = errors.New("sandbox: generic: missing authentication header")
	ErrGenericKey       = errors.New("sandbox: generic: unknown api key")
	ErrGenericTimestamp = errors.New("sandbox: generic: X-TIMESTAMP outside the 30 s window")
	ErrGenericSignature = errors.New("sandbox: generic: invalid signature")
)

// GenericWindow is how far X-TIMESTAMP may be from the server clock.
const GenericWindow = 30 * time.Second

// GenericSignature returns hex(HMAC-SHA256(secret, timestamp + METHOD +
// escapedPath + ("?" + rawQuery, if any) + body)).
func GenericSignature(secretKey []byte, timestamp, method, escapedPath, rawQuery string, body []byte) string {
	m := hmac.New(sha256.New, secretKey)
	m.Write([]byte(timestamp))
	m.Write([]byte(method))
	m.Write([]byte(escapedPath))
	if rawQuery != "" {
		m.Write([]byte{'?'})
		m.Write([]byte(rawQuery))
	}
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyGeneric checks the BetPro scheme (see the package documentation).
// escapedPath is the path exactly as sent on the request line.
func VerifyGeneric(method, escapedPath, rawQuery string, body []byte, headers http.Header, apiKey, secretKey secret.Value, now time.Time) error {
	key, ts, sig := headers.Get("X-API-KEY"), headers.Get("X-TIMESTAMP"), headers.Get("X-SIGNATURE")
	if key == "" || ts == "" || sig == "" {
		return ErrGenericMissing
	}
	if !apiKey.EqualBytes([]byte(key)) {
		return ErrGenericKey
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrGenericTimestamp
	}
	if d := now.Sub(time.UnixMilli(ms)); d > GenericWindow || d < -GenericWindow {
		return ErrGenericTimestamp
	}
	want := GenericSignature(secretKey.Reveal(), ts, method, escapedPath, rawQuery, body)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return ErrGenericSignature
	}
	return nil
}

type generic struct {
	vs     *venueServer
	key    secret.Value
	secret secret.Value
}

func newGeneric(vs *venueServer, creds map[string]string) (*generic, error) {
	g := &generic{vs: vs, key: secret.FromString(creds["api_key"]), secret: secret.FromString(creds["secret"])}
	if g.key.IsZero() {
		g.key = secret.FromString("bp_" + randHex(12))
	}
	if g.secret.IsZero() {
		g.secret = secret.FromString(randHex(32))
	}
	if strings.ContainsAny(string(g.key.Reveal()), "\r\n") {
		return nil, fmt.Errorf("%w: generic api_key", ErrBadCredentials)
	}
	return g, nil
}

func (g *generic) credentials() map[string]string {
	return map[string]string{"api_key": string(g.key.Reveal()), "secret": string(g.secret.Reveal())}
}
func (g *generic) credentialHeaders() []string {
	return []string{"X-API-KEY", "X-TIMESTAMP", "X-SIGNATURE"}
}
func (g *generic) expireSessions() {}

func genericError(w http.ResponseWriter, code int, c, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]string{"code": c, "message": msg}})
}

// requestTarget splits the request line's target into escaped path and raw
// query, exactly as the client sent them.
func requestTarget(r *http.Request) (string, string) {
	p, q, _ := strings.Cut(r.RequestURI, "?")
	return p, q
}

func (g *generic) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	var op, id string
	switch p := r.URL.Path; {
	case r.Method == http.MethodGet && p == "/api/v1/balance":
		op = "balance"
	case r.Method == http.MethodGet && p == "/api/v1/markets":
		op = "markets"
	case r.Method == http.MethodPost && p == "/api/v1/orders":
		op = "order.place"
	case r.Method == http.MethodGet && p == "/api/v1/orders":
		op = "order.list"
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/api/v1/orders/") && len(p) > len("/api/v1/orders/"):
		op, id = "order.cancel", strings.TrimPrefix(p, "/api/v1/orders/")
	default:
		g.vs.count("not_found")
		genericError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint")
		return
	}
	g.vs.count(op)
	path, query := requestTarget(r)
	if err := VerifyGeneric(r.Method, path, query, body, r.Header, g.key, g.secret, g.vs.clock()); err != nil {
		g.vs.authFailure()
		c := map[error]string{
			ErrGenericMissing: "MISSING_AUTH", ErrGenericKey: "INVALID_API_KEY",
			ErrGenericTimestamp: "TIMESTAMP_EXPIRED", ErrGenericSignature: "INVALID_SIGNATURE",
		}[err]
		genericError(w, http.StatusUnauthorized, c, "authentication failed")
		return
	}
	switch op {
	case "balance":
		writeJSON(w, http.StatusOK, map[string]any{"balances": []any{map[string]string{"currency": "USD", "available": "1000.00", "locked": "0.00"}}})
	case "markets":
		writeJSON(w, http.StatusOK, map[string]any{"markets": []any{map[string]any{
			"id": "MKT-1001", "name": "Home v Away - Match Odds", "status": "OPEN",
			"selections": []any{map[string]any{"id": "SEL-1", "name": "Home", "back": "2.10", "lay": "2.12"}, map[string]any{"id": "SEL-2", "name": "Away", "back": "3.40", "lay": "3.45"}},
		}}})
	case "order.place":
		var req struct {
			MarketID      string      `json:"market_id"`
			SelectionID   string      `json:"selection_id"`
			Side          string      `json:"side"`
			Price         json.Number `json:"price"`
			Size          json.Number `json:"size"`
			ClientOrderID string      `json:"client_order_id"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.MarketID == "" || req.Size == "" {
			genericError(w, http.StatusBadRequest, "INVALID_ORDER", "market_id and size are required")
			return
		}
		o := g.vs.addOrder("ORD-", Order{ClientOrderID: req.ClientOrderID, Instrument: req.MarketID + "/" + req.SelectionID, Side: req.Side, Price: req.Price.String(), Size: req.Size.String()})
		writeJSON(w, http.StatusCreated, genericOrder(o))
	case "order.list":
		out := []any{}
		for _, o := range g.vs.openOrders() {
			out = append(out, genericOrder(o))
		}
		writeJSON(w, http.StatusOK, map[string]any{"orders": out})
	case "order.cancel":
		o, ok := g.vs.cancelOrder(id)
		if !ok {
			genericError(w, http.StatusNotFound, "ORDER_NOT_FOUND", "no open order with this id")
			return
		}
		writeJSON(w, http.StatusOK, genericOrder(o))
	}
}

func genericOrder(o Order) map[string]any {
	return map[string]any{
		"order_id": o.ID, "client_order_id": o.ClientOrderID, "instrument": o.Instrument, "side": o.Side,
		"price": o.Price, "size": o.Size, "status": strings.ToUpper(o.Status), "created_at": o.Placed,
	}
}

var _ emulator = (*generic)(nil)
