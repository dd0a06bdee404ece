package sandbox

// Bybit (API v5) emulator. Private requests carry X-BAPI-API-KEY,
// X-BAPI-TIMESTAMP (unix ms), X-BAPI-RECV-WINDOW (ms, default 5000) and
// X-BAPI-SIGN = hex(HMAC-SHA256(secret, timestamp + api_key + recv_window +
// payload)), payload being the raw query for GET and the body for POST; a
// request is accepted when server_time - recv_window <= timestamp <
// server_time + 1000. Answers use Bybit's envelope {"retCode":0,"retMsg":"OK",
// "result":{...},"retExtInfo":{},"time":ms} (time is the request's own
// X-BAPI-TIMESTAMP once it is accepted); auth errors are retCode 10003
// (key), 10004 (sign), 10002 (timestamp/recv_window) with HTTP 401. Every
// private answer carries X-Bapi-Limit, X-Bapi-Limit-Status and
// X-Bapi-Limit-Reset-Timestamp (BybitOrderLimit order requests per second);
// past the limit, retCode 10006 "Too many visits!". Served:
// GET /v5/market/tickers (public), GET /v5/account/wallet-balance,
// POST /v5/order/create, POST /v5/order/cancel, POST /v5/order/cancel-all,
// GET /v5/order/realtime.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// Bybit verification errors.
var (
	ErrBybitMissing   = errors.New("sandbox: bybit: missing authentication header")
	ErrBybitKey       = errors.New("sandbox: bybit: api key is invalid")
	ErrBybitTimestamp = errors.New("sandbox: bybit: timestamp outside recv_window")
	ErrBybitSignature = errors.New("sandbox: bybit: error sign")
)

// BybitOrderLimit is how many order requests the emulator accepts per second.
const BybitOrderLimit = 10

// BybitDefaultRecvWindow applies when X-BAPI-RECV-WINDOW is absent (ms).
const BybitDefaultRecvWindow = 5000

// BybitSignature returns hex(HMAC-SHA256(secret, timestamp + apiKey +
// recvWindow + payload)).
func BybitSignature(secretKey []byte, timestamp, apiKey, recvWindow string, payload []byte) string {
	m := hmac.New(sha256.New, secretKey)
	m.Write([]byte(timestamp + apiKey + recvWindow))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyBybit checks Bybit's v5 HMAC signature. rawQuery is the query as
// sent; GET requests sign it, others sign body.
func VerifyBybit(method, rawQuery string, body []byte, headers http.Header, apiKey, secretKey secret.Value, now time.Time) error {
	key, ts, sig := headers.Get("X-BAPI-API-KEY"), headers.Get("X-BAPI-TIMESTAMP"), headers.Get("X-BAPI-SIGN")
	if key == "" || ts == "" || sig == "" {
		return ErrBybitMissing
	}
	if !apiKey.EqualBytes([]byte(key)) {
		return ErrBybitKey
	}
	rw := headers.Get("X-BAPI-RECV-WINDOW")
	window := int64(BybitDefaultRecvWindow)
	if rw != "" {
		w, err := strconv.ParseInt(rw, 10, 64)
		if err != nil || w <= 0 {
			return ErrBybitTimestamp
		}
		window = w
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBybitTimestamp
	}
	srv := now.UnixMilli()
	if ms < srv-window || ms >= srv+1000 {
		return ErrBybitTimestamp
	}
	payload := body
	if method == http.MethodGet {
		payload = []byte(rawQuery)
	}
	want := BybitSignature(secretKey.Reveal(), ts, key, rw, payload)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return ErrBybitSignature
	}
	return nil
}

type bybit struct {
	vs       *venueServer
	key, sec secret.Value
	orders   *windowCounter
}

func newBybit(vs *venueServer, creds map[string]string) (*bybit, error) {
	b := &bybit{
		vs: vs, key: secret.FromString(creds["api_key"]), sec: secret.FromString(creds["secret"]),
		orders: &windowCounter{window: time.Second, limit: BybitOrderLimit},
	}
	if b.key.IsZero() {
		b.key = secret.FromString(strings.ToUpper(randHex(9)))
	}
	if b.sec.IsZero() {
		b.sec = secret.FromString(strings.ToUpper(randHex(18)))
	}
	return b, nil
}

func (b *bybit) credentials() map[string]string {
	return map[string]string{"api_key": string(b.key.Reveal()), "secret": string(b.sec.Reveal())}
}
func (b *bybit) credentialHeaders() []string {
	return []string{"X-BAPI-API-KEY", "X-BAPI-TIMESTAMP", "X-BAPI-RECV-WINDOW", "X-BAPI-SIGN"}
}
func (b *bybit) expireSessions() {}

// instruments answers GET /v5/market/instruments-info: BTCUSDT spot; the
// other categories (linear, inverse, option) list nothing.
func (b *bybit) instruments(w http.ResponseWriter, q url.Values) {
	cat := q.Get("category")
	switch cat {
	case "spot":
		b.answer(w, http.StatusOK, 0, "OK", map[string]any{"category": cat, "list": []any{map[string]any{
			"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "innovation": "0", "status": "Trading",
			"marginTrading": "utaOnly", "stTag": "0",
			"lotSizeFilter": map[string]string{"basePrecision": "0.000001", "quotePrecision": "0.00000001",
				"minOrderQty": "0.000048", "maxOrderQty": "71.73956243", "minOrderAmt": "1", "maxOrderAmt": "2000000"},
			"priceFilter":    map[string]string{"tickSize": "0.01"},
			"riskParameters": map[string]string{"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
		}}})
	case "linear", "inverse", "option":
		b.answer(w, http.StatusOK, 0, "OK", map[string]any{"category": cat, "list": []any{}, "nextPageCursor": ""})
	default:
		b.answer(w, http.StatusOK, 10001, "params error: Category is invalid", nil)
	}
}

// bybitCoin is one row of GET /v5/asset/coin/query-info.
func bybitCoin(coin, remain, chain, fee, minWd string) map[string]any {
	return map[string]any{
		"name": coin, "coin": coin, "remainAmount": remain,
		"chains": []any{map[string]string{
			"chainType": chain, "confirmation": "1", "withdrawFee": fee, "depositMin": "0", "withdrawMin": minWd,
			"chain": chain, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8", "withdrawPercentageFee": "0",
			"contractAddress": "", "safeConfirmNumber": "1",
		}},
	}
}

func (b *bybit) answer(w http.ResponseWriter, status, code int, msg string, result any) {
	b.answerAt(w, b.vs.clock().UnixMilli(), status, code, msg, result)
}

// answerAt answers with time set to ms. A signed request that was accepted
// is answered with its own X-BAPI-TIMESTAMP as time: what Bybit answers
// within the millisecond the request was signed in, made deterministic,
// so a client (or a proxy) that mistakes the echoed timestamp for a
// secret is caught every time.
func (b *bybit) answerAt(w http.ResponseWriter, ms int64, status, code int, msg string, result any) {
	if result == nil {
		result = map[string]any{}
	}
	writeJSON(w, status, map[string]any{
		"retCode": code, "retMsg": msg, "result": result, "retExtInfo": map[string]any{}, "time": ms,
	})
}

func (b *bybit) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	ops := map[string]string{
		"GET /v5/market/tickers":          "market.tickers",
		"GET /v5/account/wallet-balance":  "account.wallet_balance",
		"POST /v5/order/create":           "order.create",
		"POST /v5/order/cancel":           "order.cancel",
		"POST /v5/order/cancel-all":       "order.cancel_all",
		"GET /v5/order/realtime":          "order.realtime",
		"GET /v5/order/history":           "order.history",
		"GET /v5/market/instruments-info": "market.instruments",
		"GET /v5/asset/coin/query-info":   "asset.coin_info",
		"GET /v5/user/query-api":          "user.query_api",
		"GET /v5/account/info":            "account.info",
	}
	op, ok := ops[r.Method+" "+r.URL.Path]
	if !ok {
		b.vs.count("not_found")
		b.answer(w, http.StatusNotFound, 10001, "route not found", nil)
		return
	}
	b.vs.count(op)
	now := b.vs.clock()
	if op == "market.tickers" {
		sym := r.URL.Query().Get("symbol")
		if sym == "" {
			sym = "BTCUSDT"
		}
		b.answer(w, http.StatusOK, 0, "OK", map[string]any{"category": r.URL.Query().Get("category"), "list": []any{
			map[string]string{"symbol": sym, "lastPrice": "43250.10", "bid1Price": "43250.00", "ask1Price": "43250.20", "volume24h": "1234.5"},
		}})
		return
	}
	if op == "market.instruments" {
		b.instruments(w, r.URL.Query())
		return
	}
	if err := VerifyBybit(r.Method, r.URL.RawQuery, body, r.Header, b.key, b.sec, now); err != nil {
		b.vs.authFailure()
		switch {
		case errors.Is(err, ErrBybitMissing), errors.Is(err, ErrBybitKey):
			b.answer(w, http.StatusUnauthorized, 10003, "API key is invalid.", nil)
		case errors.Is(err, ErrBybitTimestamp):
			b.answer(w, http.StatusUnauthorized, 10002, "invalid request, please check your server timestamp or recv_window param", nil)
		default:
			b.answer(w, http.StatusUnauthorized, 10004, "error sign! origin_string[REDACTED]", nil)
		}
		return
	}
	// The request's own timestamp (verified above) is the answer's time.
	signedAt, _ := strconv.ParseInt(r.Header.Get("X-BAPI-TIMESTAMP"), 10, 64)
	answer := func(status, code int, msg string, result any) { b.answerAt(w, signedAt, status, code, msg, result) }
	if strings.HasPrefix(op, "order.") && op != "order.realtime" && op != "order.history" {
		allowed := b.orders.take(now)
		left, _ := b.orders.status(now, false)
		w.Header().Set("X-Bapi-Limit", strconv.Itoa(BybitOrderLimit))
		w.Header().Set("X-Bapi-Limit-Status", strconv.Itoa(left))
		w.Header().Set("X-Bapi-Limit-Reset-Timestamp", strconv.FormatInt(b.orders.reset().UnixMilli(), 10))
		if !allowed {
			answer(http.StatusOK, 10006, "Too many visits!", nil)
			return
		}
	}
	switch op {
	case "asset.coin_info":
		answer(http.StatusOK, 0, "success", map[string]any{"rows": []any{
			bybitCoin("BTC", "2.5", "BTC", "0.0005", "0.001"), bybitCoin("USDT", "100000", "TRX", "1", "10"),
		}})
	case "user.query_api":
		// The key's own record: read-only 0, its trade permissions, a
		// unified trading account (uta 1).
		answer(http.StatusOK, 0, "", map[string]any{
			"id": "13770661", "note": "keystile sandbox", "apiKey": string(b.key.Reveal()), "readOnly": 0, "secret": "",
			"permissions": map[string][]string{"ContractTrade": {"Order", "Position"}, "Spot": {"SpotTrade"},
				"Wallet": {"AccountTransfer"}, "Options": {"OptionsTrade"}, "Derivatives": {}, "CopyTrading": {},
				"BlockTrade": {}, "Exchange": {}, "NFT": {}, "Affiliate": {}},
			"ips": []string{"*"}, "type": 1, "deadlineDay": 83, "expiredAt": "2099-01-01T00:00:00Z",
			"createdAt": "2024-01-01T00:00:00Z", "unified": 0, "uta": 1, "userID": 24617703, "inviterID": 0,
			"vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": true,
		})
	case "account.info":
		answer(http.StatusOK, 0, "success", map[string]any{
			"unifiedMarginStatus": 5, "marginMode": "REGULAR_MARGIN", "isMasterTrader": false,
			"spotHedgingStatus": "OFF", "updatedTime": strconv.FormatInt(signedAt, 10), "dcpStatus": "OFF",
			"timeWindow": 10, "smpGroup": 0,
		})
	case "account.wallet_balance":
		answer(http.StatusOK, 0, "OK", map[string]any{"list": []any{map[string]any{
			"accountType": "UNIFIED", "totalEquity": "100000",
			"coin": []any{
				map[string]string{"coin": "USDT", "walletBalance": "100000", "equity": "100000"},
				map[string]string{"coin": "BTC", "walletBalance": "1", "equity": "1"},
			},
		}}})
	case "order.create":
		var req struct {
			Category    string `json:"category"`
			Symbol      string `json:"symbol"`
			Side        string `json:"side"`
			OrderType   string `json:"orderType"`
			Qty         string `json:"qty"`
			Price       string `json:"price"`
			OrderLinkID string `json:"orderLinkId"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Category == "" || req.Symbol == "" || req.Qty == "" ||
			(req.Side != "Buy" && req.Side != "Sell") || (req.OrderType != "Limit" && req.OrderType != "Market") {
			answer(http.StatusOK, 10001, "params error", nil)
			return
		}
		o := b.vs.addOrder("bybit-", Order{ClientOrderID: req.OrderLinkID, Instrument: req.Symbol, Side: strings.ToLower(req.Side),
			Price: req.Price, Size: req.Qty, Category: req.Category})
		answer(http.StatusOK, 0, "OK", map[string]string{"orderId": o.ID, "orderLinkId": req.OrderLinkID})
	case "order.cancel":
		var req struct {
			Category    string `json:"category"`
			Symbol      string `json:"symbol"`
			OrderID     string `json:"orderId"`
			OrderLinkID string `json:"orderLinkId"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Category == "" || req.Symbol == "" {
			answer(http.StatusOK, 10001, "params error", nil)
			return
		}
		id := req.OrderID
		for _, o := range b.vs.openOrders() {
			if id == "" && req.OrderLinkID != "" && o.ClientOrderID == req.OrderLinkID {
				id = o.ID
			}
		}
		c, ok := b.vs.cancelOrder(id)
		if !ok {
			answer(http.StatusOK, 110001, "order not exists or too late to cancel", nil)
			return
		}
		answer(http.StatusOK, 0, "OK", map[string]string{"orderId": c.ID, "orderLinkId": c.ClientOrderID})
	case "order.cancel_all":
		// Bybit's rules: category is required; linear and inverse need
		// one of symbol, baseCoin, settleCoin (symbol wins, then
		// baseCoin); spot and option without them cancel the whole
		// category. orderFilter Order (the default) cancels normal
		// orders, the only kind the emulator holds.
		var req struct {
			Category    string `json:"category"`
			Symbol      string `json:"symbol"`
			BaseCoin    string `json:"baseCoin"`
			SettleCoin  string `json:"settleCoin"`
			OrderFilter string `json:"orderFilter"`
		}
		if err := json.Unmarshal(body, &req); err != nil || !bybitCategory(req.Category) {
			answer(http.StatusOK, 10001, "params error: category", nil)
			return
		}
		if (req.Category == "linear" || req.Category == "inverse") && req.Symbol == "" && req.BaseCoin == "" && req.SettleCoin == "" {
			answer(http.StatusOK, 10001, "params error: symbol, baseCoin or settleCoin is required", nil)
			return
		}
		list := []any{}
		if req.OrderFilter == "" || req.OrderFilter == "Order" {
			for _, o := range b.vs.openOrders() {
				if !bybitMatch(o, req.Category, req.Symbol, req.BaseCoin, req.SettleCoin) {
					continue
				}
				if c, ok := b.vs.cancelOrder(o.ID); ok {
					list = append(list, map[string]string{"orderId": c.ID, "orderLinkId": c.ClientOrderID})
				}
			}
		}
		answer(http.StatusOK, 0, "OK", map[string]any{"list": list, "success": "1"})
	case "order.realtime", "order.history":
		// realtime lists open orders (openOnly=1: the closed ones); history
		// lists every order. Both filter by category, symbol, baseCoin,
		// settleCoin, orderId and orderLinkId, and page with limit
		// (1..50, default 20) and cursor.
		q := r.URL.Query()
		if !bybitCategory(q.Get("category")) {
			answer(http.StatusOK, 10001, "params error: category", nil)
			return
		}
		limit := 20
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > 50 {
				answer(http.StatusOK, 10001, "params error: limit", nil)
				return
			}
			limit = n
		}
		start := 0
		if c := q.Get("cursor"); c != "" {
			n, err := strconv.Atoi(c)
			if err != nil || n < 0 {
				answer(http.StatusOK, 10001, "params error: cursor", nil)
				return
			}
			start = n
		}
		closedOnly := q.Get("openOnly") == "1"
		all := b.vs.ordersWhere(func(o *Order) bool {
			return (op == "order.history" || (o.Status == OrderCancelled) == closedOnly) &&
				bybitMatch(*o, q.Get("category"), q.Get("symbol"), q.Get("baseCoin"), q.Get("settleCoin")) &&
				(q.Get("orderId") == "" || o.ID == q.Get("orderId")) &&
				(q.Get("orderLinkId") == "" || o.ClientOrderID == q.Get("orderLinkId"))
		})
		list := []any{}
		for i := start; i < len(all) && len(list) < limit; i++ {
			o := all[i]
			side, status := "Buy", "New"
			if o.Side == "sell" {
				side = "Sell"
			}
			if o.Status == OrderCancelled {
				status = "Cancelled"
			}
			list = append(list, map[string]string{
				"orderId": o.ID, "orderLinkId": o.ClientOrderID, "symbol": o.Instrument,
				"side": side, "price": o.Price, "qty": o.Size, "orderStatus": status,
			})
		}
		next := ""
		if start+limit < len(all) {
			next = strconv.Itoa(start + limit)
		}
		answer(http.StatusOK, 0, "OK", map[string]any{"list": list, "nextPageCursor": next, "category": q.Get("category")})
	}
}

// bybitCategory reports whether c is one of Bybit's product lines.
func bybitCategory(c string) bool {
	return c == "spot" || c == "linear" || c == "inverse" || c == "option"
}

// bybitMatch reports whether o is in category (orders placed without one
// count as spot) and matches the optional symbol, base coin and settle
// coin (a linear symbol ends with its settle coin: BTCUSDT, BTCPERP is
// USDC).
func bybitMatch(o Order, category, symbol, baseCoin, settleCoin string) bool {
	oc := o.Category
	if oc == "" {
		oc = "spot"
	}
	if oc != category || symbol != "" && o.Instrument != symbol || baseCoin != "" && !strings.HasPrefix(o.Instrument, baseCoin) {
		return false
	}
	if settleCoin != "" {
		settle := "USDC"
		if strings.HasSuffix(o.Instrument, "USDT") {
			settle = "USDT"
		}
		return settle == settleCoin
	}
	return true
}

var _ emulator = (*bybit)(nil)
