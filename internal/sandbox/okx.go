package sandbox

// OKX (API v5) emulator. Private requests carry OK-ACCESS-KEY,
// OK-ACCESS-PASSPHRASE, OK-ACCESS-TIMESTAMP (ISO-8601 UTC with
// milliseconds, within 30 s) and OK-ACCESS-SIGN = base64(HMAC-SHA256(secret,
// timestamp + METHOD + request URI as sent + body)). Errors use OKX's shape
// {"code":"50113","msg":"Invalid Sign","data":[]} (HTTP 401 for
// authentication, 429 with code 50011 past 60 order requests per 2 s).
// Served: GET /api/v5/market/ticker (public), GET /api/v5/account/balance,
// POST /api/v5/trade/order, POST /api/v5/trade/cancel-order,
// POST /api/v5/trade/cancel-batch-orders, GET /api/v5/trade/orders-pending.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// OKX verification errors.
var (
	ErrOKXMissing    = errors.New("sandbox: okx: missing authentication header")
	ErrOKXKey        = errors.New("sandbox: okx: invalid OK-ACCESS-KEY")
	ErrOKXPassphrase = errors.New("sandbox: okx: OK-ACCESS-PASSPHRASE incorrect")
	ErrOKXTimestamp  = errors.New("sandbox: okx: timestamp request expired")
	ErrOKXSignature  = errors.New("sandbox: okx: invalid sign")
)

// OKXWindow is how far OK-ACCESS-TIMESTAMP may be from the server clock.
const OKXWindow = 30 * time.Second

// OKXOrderLimit is how many order requests the emulator accepts per 2 s.
const OKXOrderLimit = 60

// OKXSignature returns base64(HMAC-SHA256(secret, timestamp + method +
// requestURI + body)); requestURI is the path and query exactly as on the
// request line.
func OKXSignature(secretKey []byte, timestamp, method, requestURI string, body []byte) string {
	m := hmac.New(sha256.New, secretKey)
	m.Write([]byte(timestamp + method + requestURI))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// VerifyOKX checks OKX's v5 request signature.
func VerifyOKX(method, requestURI string, body []byte, headers http.Header, apiKey, secretKey, passphrase secret.Value, now time.Time) error {
	key, pass := headers.Get("OK-ACCESS-KEY"), headers.Get("OK-ACCESS-PASSPHRASE")
	ts, sig := headers.Get("OK-ACCESS-TIMESTAMP"), headers.Get("OK-ACCESS-SIGN")
	if key == "" || pass == "" || ts == "" || sig == "" {
		return ErrOKXMissing
	}
	if !apiKey.EqualBytes([]byte(key)) {
		return ErrOKXKey
	}
	if !passphrase.EqualBytes([]byte(pass)) {
		return ErrOKXPassphrase
	}
	t, err := time.Parse("2006-01-02T15:04:05.000Z", ts)
	if err != nil {
		return ErrOKXTimestamp
	}
	if d := now.Sub(t); d > OKXWindow || d < -OKXWindow {
		return ErrOKXTimestamp
	}
	want := OKXSignature(secretKey.Reveal(), ts, method, requestURI, body)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return ErrOKXSignature
	}
	return nil
}

type okx struct {
	vs                   *venueServer
	key, sec, passphrase secret.Value
	orders               *windowCounter
}

func newOKX(vs *venueServer, creds map[string]string) (*okx, error) {
	o := &okx{
		vs: vs, key: secret.FromString(creds["api_key"]), sec: secret.FromString(creds["secret"]),
		passphrase: secret.FromString(creds["passphrase"]),
		orders:     &windowCounter{window: 2 * time.Second, limit: OKXOrderLimit},
	}
	if o.key.IsZero() {
		u := randHex(16)
		o.key = secret.FromString(u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:])
	}
	if o.sec.IsZero() {
		o.sec = secret.FromString(strings.ToUpper(randHex(16)))
	}
	if o.passphrase.IsZero() {
		o.passphrase = secret.FromString("Pp" + randHex(6))
	}
	return o, nil
}

func (o *okx) credentials() map[string]string {
	return map[string]string{"api_key": string(o.key.Reveal()), "secret": string(o.sec.Reveal()), "passphrase": string(o.passphrase.Reveal())}
}
func (o *okx) credentialHeaders() []string {
	return []string{"OK-ACCESS-KEY", "OK-ACCESS-SIGN", "OK-ACCESS-TIMESTAMP", "OK-ACCESS-PASSPHRASE"}
}
func (o *okx) expireSessions() {}

func okxAnswer(w http.ResponseWriter, status int, code, msg string, data []any) {
	if data == nil {
		data = []any{}
	}
	writeJSON(w, status, map[string]any{"code": code, "msg": msg, "data": data})
}

func (o *okx) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	ops := map[string]string{
		"GET /api/v5/market/ticker":              "market.ticker",
		"GET /api/v5/account/balance":            "account.balance",
		"POST /api/v5/trade/order":               "trade.order",
		"POST /api/v5/trade/cancel-order":        "trade.cancel",
		"POST /api/v5/trade/cancel-batch-orders": "trade.cancel_batch",
		"GET /api/v5/trade/orders-pending":       "trade.pending",
		"GET /api/v5/trade/order":                "trade.order_details",
		"GET /api/v5/public/instruments":         "public.instruments",
		"GET /api/v5/asset/currencies":           "asset.currencies",
		"POST /api/v5/trade/batch-orders":        "trade.batch_orders",
	}
	op, ok := ops[r.Method+" "+r.URL.Path]
	if !ok {
		o.vs.count("not_found")
		okxAnswer(w, http.StatusNotFound, "50000", "Not Found", nil)
		return
	}
	o.vs.count(op)
	if op == "market.ticker" {
		inst := r.URL.Query().Get("instId")
		if inst == "" {
			okxAnswer(w, http.StatusBadRequest, "51000", "Parameter instId error", nil)
			return
		}
		okxAnswer(w, http.StatusOK, "0", "", []any{map[string]string{
			"instType": "SPOT", "instId": inst, "last": "43250.1", "askPx": "43250.2", "bidPx": "43250.1",
			"ts": fmt.Sprint(o.vs.clock().UnixMilli()),
		}})
		return
	}
	if op == "public.instruments" {
		o.instruments(w, r.URL.Query())
		return
	}
	if sim := r.Header.Get("x-simulated-trading"); sim != "" && sim != "1" && sim != "0" {
		okxAnswer(w, http.StatusBadRequest, "50038", "This feature is unavailable in demo trading", nil)
		return
	}
	if err := VerifyOKX(r.Method, r.RequestURI, body, r.Header, o.key, o.sec, o.passphrase, o.vs.clock()); err != nil {
		o.vs.authFailure()
		switch {
		case errors.Is(err, ErrOKXMissing):
			okxAnswer(w, http.StatusUnauthorized, "50103", "Request header OK-ACCESS-KEY can not be empty.", nil)
		case errors.Is(err, ErrOKXKey):
			okxAnswer(w, http.StatusUnauthorized, "50111", "Invalid OK-ACCESS-KEY.", nil)
		case errors.Is(err, ErrOKXPassphrase):
			okxAnswer(w, http.StatusUnauthorized, "50105", "Request header OK-ACCESS-PASSPHRASE incorrect.", nil)
		case errors.Is(err, ErrOKXTimestamp):
			okxAnswer(w, http.StatusUnauthorized, "50102", "Timestamp request expired.", nil)
		default:
			okxAnswer(w, http.StatusUnauthorized, "50113", "Invalid Sign", nil)
		}
		return
	}
	if strings.HasPrefix(op, "trade.") && op != "trade.pending" && op != "trade.order_details" && !o.orders.take(o.vs.clock()) {
		okxAnswer(w, http.StatusTooManyRequests, "50011", "Too Many Requests", nil)
		return
	}
	switch op {
	case "account.balance":
		okxAnswer(w, http.StatusOK, "0", "", []any{map[string]any{
			"totalEq": "100000", "uTime": fmt.Sprint(o.vs.clock().UnixMilli()),
			"details": []any{
				map[string]string{"ccy": "USDT", "availBal": "100000", "cashBal": "100000", "eq": "100000"},
				map[string]string{"ccy": "BTC", "availBal": "1", "cashBal": "1", "eq": "1"},
			},
		}})
	case "trade.order":
		res, ok := o.place(body, r.Header)
		if !ok {
			okxAnswer(w, http.StatusOK, "51000", "Parameter error", nil)
			return
		}
		okxAnswer(w, http.StatusOK, "0", "", []any{res})
	case "trade.batch_orders":
		// Up to 20 orders; code 0 when all were placed, 2 when none
		// was, 1 when some were (each carries its own sCode).
		var reqs []json.RawMessage
		if err := json.Unmarshal(body, &reqs); err != nil || len(reqs) == 0 || len(reqs) > 20 {
			okxAnswer(w, http.StatusOK, "51000", "Parameter error", nil)
			return
		}
		var res []any
		placed := 0
		for _, one := range reqs {
			r, ok := o.place(one, r.Header)
			if !ok {
				r = map[string]string{"ordId": "", "clOrdId": "", "tag": "", "sCode": "51000", "sMsg": "Parameter error"}
			} else {
				placed++
			}
			res = append(res, r)
		}
		code, msg := "0", ""
		switch {
		case placed == 0:
			code, msg = "2", "All operations failed"
		case placed < len(reqs):
			code, msg = "1", "Operation failed."
		}
		okxAnswer(w, http.StatusOK, code, msg, res)
	case "asset.currencies":
		okxAnswer(w, http.StatusOK, "0", "", []any{
			okxCurrency("BTC", "Bitcoin", "BTC-Bitcoin", "0.0002", "0.0005"),
			okxCurrency("USDT", "Tether", "USDT-TRC20", "1", "2"),
		})
	case "trade.cancel":
		var req struct {
			InstID  string `json:"instId"`
			OrdID   string `json:"ordId"`
			ClOrdID string `json:"clOrdId"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.InstID == "" {
			okxAnswer(w, http.StatusOK, "51000", "Parameter error", nil)
			return
		}
		okxAnswer(w, http.StatusOK, "0", "", []any{o.cancel(req.OrdID, req.ClOrdID)})
	case "trade.cancel_batch":
		var req []struct {
			InstID  string `json:"instId"`
			OrdID   string `json:"ordId"`
			ClOrdID string `json:"clOrdId"`
		}
		if err := json.Unmarshal(body, &req); err != nil || len(req) == 0 || len(req) > 20 {
			okxAnswer(w, http.StatusOK, "51000", "Parameter error", nil)
			return
		}
		for _, c := range req {
			if c.InstID == "" || (c.OrdID == "" && c.ClOrdID == "") {
				okxAnswer(w, http.StatusOK, "51000", "Parameter instId error", nil)
				return
			}
		}
		// code "0": every order cancelled; "2": some; "1": none. Each
		// order's own result is its sCode.
		var res []any
		ok := 0
		for _, c := range req {
			r := o.cancel(c.OrdID, c.ClOrdID)
			if r["sCode"] == "0" {
				ok++
			}
			res = append(res, r)
		}
		switch ok {
		case len(req):
			okxAnswer(w, http.StatusOK, "0", "", res)
		case 0:
			okxAnswer(w, http.StatusOK, "1", "All operations failed", res)
		default:
			okxAnswer(w, http.StatusOK, "2", "Bulk operation partially succeeded", res)
		}
	case "trade.order_details":
		q := r.URL.Query()
		if q.Get("instId") == "" || (q.Get("ordId") == "" && q.Get("clOrdId") == "") {
			okxAnswer(w, http.StatusOK, "51000", "Parameter error", nil)
			return
		}
		ord, ok := o.vs.findOrder(q.Get("ordId"), q.Get("clOrdId"))
		if !ok || ord.Instrument != q.Get("instId") {
			okxAnswer(w, http.StatusOK, "51603", "Order does not exist", nil)
			return
		}
		state := "live"
		if ord.Status == OrderCancelled {
			state = "canceled"
		}
		okxAnswer(w, http.StatusOK, "0", "", []any{map[string]string{
			"instId": ord.Instrument, "ordId": ord.ID, "clOrdId": ord.ClientOrderID, "side": ord.Side,
			"px": ord.Price, "sz": ord.Size, "state": state,
		}})
	case "trade.pending":
		// Newest first; limit (1..100, default 100) and after (only
		// orders older than that ordId) page through them.
		q := r.URL.Query()
		limit := 100
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > 100 {
				okxAnswer(w, http.StatusOK, "51000", "Parameter limit error", nil)
				return
			}
			limit = n
		}
		var after int64 = -1
		if a := q.Get("after"); a != "" {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				okxAnswer(w, http.StatusOK, "51000", "Parameter after error", nil)
				return
			}
			after = n
		}
		open := o.vs.openOrders()
		res := []any{}
		for i := len(open) - 1; i >= 0 && len(res) < limit; i-- {
			ord := open[i]
			if id, _ := strconv.ParseInt(ord.ID, 10, 64); after >= 0 && id >= after {
				continue
			}
			if it := q.Get("instId"); it != "" && ord.Instrument != it {
				continue
			}
			res = append(res, map[string]string{
				"instId": ord.Instrument, "ordId": ord.ID, "clOrdId": ord.ClientOrderID, "side": ord.Side,
				"px": ord.Price, "sz": ord.Size, "state": "live",
			})
		}
		okxAnswer(w, http.StatusOK, "0", "", res)
	}
}

// place places one order (a trade/order body or one batch element) and
// returns OKX's per-order result; ok is false for a malformed order.
func (o *okx) place(body []byte, h http.Header) (map[string]string, bool) {
	var req struct {
		InstID  string `json:"instId"`
		TdMode  string `json:"tdMode"`
		Side    string `json:"side"`
		OrdType string `json:"ordType"`
		Sz      string `json:"sz"`
		Px      string `json:"px"`
		ClOrdID string `json:"clOrdId"`
		Tag     string `json:"tag"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.InstID == "" || req.Sz == "" || (req.Side != "buy" && req.Side != "sell") || req.OrdType == "" {
		return nil, false
	}
	ord := o.vs.addOrder("", Order{ClientOrderID: req.ClOrdID, Instrument: req.InstID, Side: req.Side, Price: req.Px, Size: req.Sz})
	// ts: OKX answers with its time in ms; here the request's own
	// (verified) OK-ACCESS-TIMESTAMP, so the answer is deterministic.
	signedAt, _ := time.Parse(time.RFC3339Nano, h.Get("OK-ACCESS-TIMESTAMP"))
	return map[string]string{
		"ordId": ord.ID, "clOrdId": req.ClOrdID, "tag": req.Tag, "ts": fmt.Sprint(signedAt.UnixMilli()), "sCode": "0", "sMsg": "Order placed",
	}, true
}

// instruments answers GET /api/v5/public/instruments: BTC-USDT spot; the
// other instrument types (FUTURES, SWAP, OPTION) list nothing.
func (o *okx) instruments(w http.ResponseWriter, q url.Values) {
	switch q.Get("instType") {
	case "SPOT":
		okxAnswer(w, http.StatusOK, "0", "", []any{map[string]string{
			"instType": "SPOT", "instId": "BTC-USDT", "uly": "", "instFamily": "", "baseCcy": "BTC", "quoteCcy": "USDT",
			"settleCcy": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "1606468572000", "expTime": "",
			"lever": "10", "tickSz": "0.1", "lotSz": "0.00000001", "minSz": "0.00001", "ctType": "", "alias": "",
			"state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000", "ruleType": "normal", "ctMult": "", "ctVal": "",
		}})
	case "MARGIN", "SWAP", "FUTURES":
		okxAnswer(w, http.StatusOK, "0", "", nil)
	case "OPTION":
		if q.Get("uly") == "" && q.Get("instFamily") == "" {
			okxAnswer(w, http.StatusBadRequest, "51000", "Parameter uly error", nil)
			return
		}
		okxAnswer(w, http.StatusOK, "0", "", nil)
	default:
		okxAnswer(w, http.StatusBadRequest, "51000", "Parameter instType error", nil)
	}
}

// okxCurrency is one entry of GET /api/v5/asset/currencies.
func okxCurrency(ccy, name, chain, fee, minWd string) map[string]any {
	return map[string]any{
		"ccy": ccy, "name": name, "logoLink": "", "chain": chain, "canDep": true, "canWd": true, "canInternal": true,
		"minDep": "0.00005", "minWd": minWd, "maxWd": "500", "wdTickSz": "8", "wdQuota": "1000000", "usedWdQuota": "0",
		"fee": fee, "minFee": fee, "maxFee": fee, "mainNet": true, "needTag": false, "minDepArrivalConfirm": "1",
		"minWdUnlockConfirm": "2", "depQuotaFixed": "", "usedDepQuotaFixed": "", "depQuoteDailyLayer2": "",
	}
}

// cancel cancels by order id or client order id and returns OKX's per-order result.
func (o *okx) cancel(ordID, clOrdID string) map[string]string {
	if ordID == "" && clOrdID != "" {
		for _, ord := range o.vs.openOrders() {
			if ord.ClientOrderID == clOrdID {
				ordID = ord.ID
				break
			}
		}
	}
	if c, ok := o.vs.cancelOrder(ordID); ok {
		return map[string]string{"ordId": c.ID, "clOrdId": c.ClientOrderID, "sCode": "0", "sMsg": ""}
	}
	return map[string]string{"ordId": ordID, "clOrdId": clOrdID, "sCode": "51400", "sMsg": "Cancellation failed as the order does not exist."}
}

var _ emulator = (*okx)(nil)
