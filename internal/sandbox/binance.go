package sandbox

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Binance verification errors; BinanceErrorCode maps them to Binance's
// own codes and messages.
var (
	ErrBinanceKeyFormat = errors.New("sandbox: binance: api-key format invalid")
	ErrBinanceKey       = errors.New("sandbox: binance: invalid api-key")
	ErrBinanceTimestamp = errors.New("sandbox: binance: timestamp outside of the recvWindow")
	ErrBinanceSignature = errors.New("sandbox: binance: signature not valid")
	ErrBinanceParams    = errors.New("sandbox: binance: mandatory parameter missing or malformed")
)

// BinanceMaxWeight is the emulator's (and Binance spot's) request weight
// per minute.
const BinanceMaxWeight = 6000

// BinanceErrorCode returns the HTTP status, code and msg Binance answers a
// verification error with.
func BinanceErrorCode(err error) (status, code int, msg string) {
	switch {
	case errors.Is(err, ErrBinanceKeyFormat):
		return http.StatusUnauthorized, -2014, "API-key format invalid."
	case errors.Is(err, ErrBinanceKey):
		return http.StatusUnauthorized, -2015, "Invalid API-key, IP, or permissions for action."
	case errors.Is(err, ErrBinanceTimestamp):
		return http.StatusBadRequest, -1021, "Timestamp for this request is outside of the recvWindow."
	case errors.Is(err, ErrBinanceParams):
		return http.StatusBadRequest, -1102, "Mandatory parameter was not sent, was empty/null, or malformed."
	default:
		return http.StatusBadRequest, -1022, "Signature for this request is not valid."
	}
}

// BinanceKey is the verifying half of a Binance API key: an HMAC secret or
// an Ed25519 public key.
type BinanceKey struct {
	APIKey  string
	Secret  []byte            // HMAC-SHA256 key, or nil
	Ed25519 ed25519.PublicKey // or nil
}

// binanceDropSignature splits a raw parameter string into the string
// without its signature pairs and the (last) signature value, still
// percent-encoded.
func binanceDropSignature(raw string) (rest, sig string, found bool) {
	var keep []string
	for _, p := range strings.Split(raw, "&") {
		if k, v, _ := strings.Cut(p, "="); k == "signature" {
			sig, found = v, true
			continue
		}
		keep = append(keep, p)
	}
	return strings.Join(keep, "&"), sig, found
}

// VerifyBinance checks a SIGNED request: X-MBX-APIKEY, the timestamp
// against recvWindow (default 5000 ms, at most 60000; at most 1000 ms in
// the future) and signature = hex HMAC-SHA256 (or base64 Ed25519) of the
// query (without signature) concatenated with the form body (without
// signature), both exactly as sent.
func VerifyBinance(rawQuery string, body []byte, headers http.Header, key BinanceKey, now time.Time) error {
	k := headers.Get("X-MBX-APIKEY")
	if len(k) != 64 || strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		return ErrBinanceKeyFormat
	}
	if subtle.ConstantTimeCompare([]byte(k), []byte(key.APIKey)) != 1 {
		return ErrBinanceKey
	}
	q, qsig, inQuery := binanceDropSignature(rawQuery)
	b, bsig, inBody := binanceDropSignature(string(body))
	if len(body) == 0 {
		b = ""
	}
	sig := qsig
	if !inQuery {
		sig = bsig
	}
	if !inQuery && !inBody {
		return ErrBinanceSignature
	}
	all, err := url.ParseQuery(q + "&" + b)
	if err != nil {
		return ErrBinanceParams
	}
	ts, err := strconv.ParseInt(all.Get("timestamp"), 10, 64)
	if err != nil {
		return ErrBinanceParams
	}
	window := int64(5000)
	if rw := all.Get("recvWindow"); rw != "" {
		if window, err = strconv.ParseInt(rw, 10, 64); err != nil || window <= 0 || window > 60000 {
			return ErrBinanceParams
		}
	}
	server := now.UnixMilli()
	if ts >= server+1000 || server-ts > window {
		return ErrBinanceTimestamp
	}
	payload := []byte(q + b)
	switch {
	case key.Ed25519 != nil:
		s, err := url.QueryUnescape(sig)
		if err != nil {
			return ErrBinanceSignature
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || !ed25519.Verify(key.Ed25519, payload, raw) {
			return ErrBinanceSignature
		}
	default:
		m := hmac.New(sha256.New, key.Secret)
		m.Write(payload)
		want := hex.EncodeToString(m.Sum(nil))
		if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
			return ErrBinanceSignature
		}
	}
	return nil
}

const binanceAlnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randAlnum(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = binanceAlnum[int(b[i])%len(binanceAlnum)]
	}
	return string(b)
}

type binance struct {
	vs      *venueServer
	key     BinanceKey
	privPEM string // Ed25519 mode: the PEM given

	mu          sync.Mutex
	minute      int64
	weight      int
	limited     bool // answered 429 in this minute: more requests get 418
	orderWindow int64
	orders10s   int
	orders1d    int
}

func newBinance(vs *venueServer, creds map[string]string) (*binance, error) {
	b := &binance{vs: vs, key: BinanceKey{APIKey: creds["api_key"]}}
	if b.key.APIKey == "" {
		b.key.APIKey = randAlnum(64)
	}
	if len(b.key.APIKey) != 64 || strings.Trim(b.key.APIKey, binanceAlnum) != "" {
		return nil, fmt.Errorf("%w: binance api_key must be 64 letters or digits", ErrBadCredentials)
	}
	if p := creds["private_key"]; p != "" {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			return nil, fmt.Errorf("%w: binance private_key must be a PKCS#8 PEM", ErrBadCredentials)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		ek, ok := k.(ed25519.PrivateKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: binance private_key must be an Ed25519 PKCS#8 PEM", ErrBadCredentials)
		}
		b.key.Ed25519, _ = ek.Public().(ed25519.PublicKey)
		b.privPEM = p
		return b, nil
	}
	b.key.Secret = []byte(creds["secret"])
	if len(b.key.Secret) == 0 {
		b.key.Secret = []byte(randAlnum(64))
	}
	return b, nil
}

func (b *binance) credentials() map[string]string {
	if b.key.Ed25519 != nil {
		return map[string]string{"api_key": b.key.APIKey, "private_key": b.privPEM}
	}
	return map[string]string{"api_key": b.key.APIKey, "secret": string(b.key.Secret)}
}
func (b *binance) credentialHeaders() []string { return []string{"X-MBX-APIKEY"} }
func (b *binance) expireSessions()             {}

func binanceError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "msg": msg})
}

type binanceRoute struct {
	op     string
	weight int
	signed bool
}

// binanceRouteOf returns a route's operation name, weight and whether it
// is SIGNED.
func binanceRouteOf(route string) (binanceRoute, bool) {
	switch route {
	case "GET /api/v3/ping":
		return binanceRoute{"ping", 1, false}, true
	case "GET /api/v3/time":
		return binanceRoute{"time", 1, false}, true
	case "GET /api/v3/exchangeInfo":
		return binanceRoute{"exchangeInfo", 20, false}, true
	case "GET /api/v3/ticker/price":
		return binanceRoute{"ticker.price", 2, false}, true
	case "GET /api/v3/ticker/24hr":
		return binanceRoute{"ticker.24hr", 2, false}, true
	case "GET /api/v3/account":
		return binanceRoute{"account", 20, true}, true
	case "POST /api/v3/order":
		return binanceRoute{"order.new", 1, true}, true
	case "DELETE /api/v3/order":
		return binanceRoute{"order.cancel", 1, true}, true
	case "GET /api/v3/order":
		return binanceRoute{"order.query", 4, true}, true
	case "GET /api/v3/openOrders":
		return binanceRoute{"openOrders", 6, true}, true
	case "DELETE /api/v3/openOrders":
		return binanceRoute{"openOrders.cancel", 1, true}, true
	case "POST /api/v3/userDataStream":
		return binanceRoute{"userDataStream", 2, false}, true
	case "GET /sapi/v1/capital/config/getall":
		return binanceRoute{"capital.config", 10, true}, true
	case "GET /sapi/v1/margin/allPairs":
		return binanceRoute{"margin.allPairs", 1, false}, true
	case "GET /sapi/v1/margin/isolated/allPairs":
		return binanceRoute{"margin.isolatedPairs", 10, true}, true
	case "GET /fapi/v1/exchangeInfo":
		return binanceRoute{"fapi.exchangeInfo", 1, false}, true
	case "GET /dapi/v1/exchangeInfo":
		return binanceRoute{"dapi.exchangeInfo", 1, false}, true
	}
	return binanceRoute{}, false
}

// useWeight adds weight to the current minute and reports the total, or
// the status (429 then 418) and Retry-After seconds when over the limit.
func (b *binance) useWeight(now time.Time, weight int) (used, status, retry int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := now.Unix() / 60; m != b.minute {
		b.minute, b.weight, b.limited = m, 0, false
	}
	retry = int(60 - now.Unix()%60)
	if b.limited {
		return b.weight, http.StatusTeapot, retry + 120
	}
	if b.weight+weight > BinanceMaxWeight {
		b.limited = true
		return b.weight, http.StatusTooManyRequests, retry
	}
	b.weight += weight
	return b.weight, 0, 0
}

func (b *binance) countOrder(now time.Time) (int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := now.Unix() / 10; w != b.orderWindow {
		b.orderWindow, b.orders10s = w, 0
	}
	b.orders10s++
	b.orders1d++
	return b.orders10s, b.orders1d
}

func (b *binance) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	rt, ok := binanceRouteOf(r.Method + " " + r.URL.Path)
	if !ok {
		b.vs.count("not_found")
		binanceError(w, http.StatusNotFound, -1000, "Unknown endpoint.")
		return
	}
	b.vs.count(rt.op)
	now := b.vs.clock()
	if rt.op == "openOrders" && !strings.Contains("&"+r.URL.RawQuery, "&symbol=") {
		rt.weight = 80 // every symbol
	}
	used, status, retry := b.useWeight(now, rt.weight)
	w.Header().Set("X-MBX-USED-WEIGHT-1M", strconv.Itoa(used))
	if status != 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		if status == http.StatusTeapot {
			binanceError(w, status, -1003, fmt.Sprintf("Way too much request weight used; IP banned until %d.", now.Add(time.Duration(retry)*time.Second).UnixMilli()))
			return
		}
		binanceError(w, status, -1003, "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")
		return
	}
	if rt.signed {
		if err := VerifyBinance(r.URL.RawQuery, body, r.Header, b.key, now); err != nil {
			b.vs.authFailure()
			st, code, msg := BinanceErrorCode(err)
			binanceError(w, st, code, msg)
			return
		}
	} else if (rt.op == "userDataStream" || rt.op == "margin.allPairs") && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-MBX-APIKEY")), []byte(b.key.APIKey)) != 1 {
		b.vs.authFailure()
		st, code, msg := BinanceErrorCode(ErrBinanceKey)
		binanceError(w, st, code, msg)
		return
	}
	p, _ := url.ParseQuery(r.URL.RawQuery)
	if len(body) > 0 {
		if f, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range f {
				p[k] = append(p[k], v...)
			}
		}
	}
	switch rt.op {
	case "ping":
		writeJSON(w, http.StatusOK, map[string]any{})
	case "time":
		writeJSON(w, http.StatusOK, map[string]int64{"serverTime": now.UnixMilli()})
	case "exchangeInfo":
		writeJSON(w, http.StatusOK, binanceExchangeInfo(now))
	case "fapi.exchangeInfo", "dapi.exchangeInfo":
		writeJSON(w, http.StatusOK, binanceFuturesInfo(rt.op == "dapi.exchangeInfo", now))
	case "capital.config":
		writeJSON(w, http.StatusOK, []any{binanceCoin("BTC", "Bitcoin", "2.5", "0.0000071"), binanceCoin("USDT", "TetherUS", "150000", "1")})
	case "margin.allPairs", "margin.isolatedPairs":
		pair := map[string]any{"id": 351637150141315861, "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
			"isMarginTrade": true, "isBuyAllowed": true, "isSellAllowed": true}
		if rt.op == "margin.isolatedPairs" {
			delete(pair, "id")
		}
		writeJSON(w, http.StatusOK, []any{pair})
	case "ticker.price":
		sym := p.Get("symbol")
		if sym == "" {
			sym = "BTCUSDT"
		}
		writeJSON(w, http.StatusOK, map[string]string{"symbol": sym, "price": "37500.00000000"})
	case "ticker.24hr":
		sym := p.Get("symbol")
		if sym == "" {
			sym = "BTCUSDT"
		}
		day := now.Add(-24 * time.Hour).UnixMilli()
		writeJSON(w, http.StatusOK, map[string]any{
			"symbol": sym, "priceChange": "250.00000000", "priceChangePercent": "0.671", "weightedAvgPrice": "37400.12000000",
			"prevClosePrice": "37250.00000000", "lastPrice": "37500.00000000", "lastQty": "0.01000000",
			"bidPrice": "37499.99000000", "bidQty": "1.20000000", "askPrice": "37500.01000000", "askQty": "0.80000000",
			"openPrice": "37250.00000000", "highPrice": "37800.00000000", "lowPrice": "37100.00000000",
			"volume": "12000.50000000", "quoteVolume": "448800000.00000000", "openTime": day, "closeTime": now.UnixMilli(),
			"firstId": 28385, "lastId": 28460, "count": 76,
		})
	case "userDataStream":
		writeJSON(w, http.StatusOK, map[string]string{"listenKey": randAlnum(60)})
	case "account":
		writeJSON(w, http.StatusOK, map[string]any{
			"canTrade": true, "canWithdraw": false, "accountType": "SPOT", "updateTime": now.UnixMilli(),
			"balances": []any{
				map[string]string{"asset": "BTC", "free": "2.50000000", "locked": "0.00000000"},
				map[string]string{"asset": "USDT", "free": "150000.00000000", "locked": "0.00000000"},
			},
		})
	case "order.new":
		side, typ := p.Get("side"), p.Get("type")
		if p.Get("symbol") == "" || (side != "BUY" && side != "SELL") || typ == "" || (p.Get("quantity") == "" && p.Get("quoteOrderQty") == "") {
			binanceError(w, http.StatusBadRequest, -1102, "Mandatory parameter was not sent, was empty/null, or malformed.")
			return
		}
		n10, n1d := b.countOrder(now)
		w.Header().Set("X-MBX-ORDER-COUNT-10S", strconv.Itoa(n10))
		w.Header().Set("X-MBX-ORDER-COUNT-1D", strconv.Itoa(n1d))
		cid := p.Get("newClientOrderId")
		if cid == "" {
			cid = "x-" + randAlnum(20)
		}
		o := b.vs.addOrder("", Order{ClientOrderID: cid, Instrument: p.Get("symbol"), Side: strings.ToLower(side), Price: p.Get("price"), Size: p.Get("quantity")})
		writeJSON(w, http.StatusOK, binanceOrderJSON(o, typ, "NEW", now))
	case "order.cancel":
		id := p.Get("orderId")
		if id == "" {
			id = b.byClientID(p.Get("origClientOrderId"))
		}
		o, ok := b.vs.cancelOrder(id)
		if !ok {
			binanceError(w, http.StatusBadRequest, -2011, "Unknown order sent.")
			return
		}
		writeJSON(w, http.StatusOK, binanceOrderJSON(o, "LIMIT", "CANCELED", now))
	case "order.query":
		if p.Get("symbol") == "" || (p.Get("orderId") == "" && p.Get("origClientOrderId") == "") {
			binanceError(w, http.StatusBadRequest, -1102, "Mandatory parameter was not sent, was empty/null, or malformed.")
			return
		}
		o, ok := b.vs.findOrder(p.Get("orderId"), p.Get("origClientOrderId"))
		if !ok || o.Instrument != p.Get("symbol") {
			binanceError(w, http.StatusBadRequest, -2013, "Order does not exist.")
			return
		}
		status := "NEW"
		if o.Status == OrderCancelled {
			status = "CANCELED"
		}
		writeJSON(w, http.StatusOK, binanceOrderJSON(o, "LIMIT", status, now))
	case "openOrders":
		// Every symbol's open orders without symbol, one symbol's with it.
		out := []any{}
		for _, o := range b.vs.openOrders() {
			if sym := p.Get("symbol"); sym == "" || o.Instrument == sym {
				out = append(out, binanceOrderJSON(o, "LIMIT", "NEW", now))
			}
		}
		writeJSON(w, http.StatusOK, out)
	case "openOrders.cancel":
		// symbol is mandatory; a symbol without open orders is -2011.
		sym := p.Get("symbol")
		if sym == "" {
			binanceError(w, http.StatusBadRequest, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
			return
		}
		out := []any{}
		for _, o := range b.vs.openOrders() {
			if o.Instrument != sym {
				continue
			}
			if c, ok := b.vs.cancelOrder(o.ID); ok {
				m := binanceOrderJSON(c, "LIMIT", "CANCELED", now)
				m["origClientOrderId"], m["clientOrderId"], m["orderListId"] = c.ClientOrderID, "cancel-"+randAlnum(16), -1
				delete(m, "transactTime")
				out = append(out, m)
			}
		}
		if len(out) == 0 {
			binanceError(w, http.StatusBadRequest, -2011, "Unknown order sent.")
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// binanceExchangeInfo is GET /api/v3/exchangeInfo as Binance documents
// it: one symbol, BTCUSDT, with its filters and permissions.
func binanceExchangeInfo(now time.Time) map[string]any {
	return map[string]any{
		"timezone": "UTC", "serverTime": now.UnixMilli(),
		"rateLimits": []any{
			map[string]any{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": BinanceMaxWeight},
			map[string]any{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
			map[string]any{"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
		},
		"exchangeFilters": []any{},
		"symbols": []any{map[string]any{
			"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
			"quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
			"quoteCommissionPrecision": 8,
			"orderTypes":               []string{"LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"},
			"icebergAllowed":           true, "ocoAllowed": true, "otoAllowed": true, "quoteOrderQtyMarketAllowed": true,
			"allowTrailingStop": true, "cancelReplaceAllowed": true, "isSpotTradingAllowed": true,
			"isMarginTradingAllowed": true,
			"filters": []any{
				map[string]string{"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
				map[string]string{"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
				map[string]any{"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5},
				map[string]string{"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000", "stepSize": "0.00000000"},
			},
			"permissions": []string{}, "permissionSets": [][]string{{"SPOT", "MARGIN"}},
			"defaultSelfTradePreventionMode":  "EXPIRE_MAKER",
			"allowedSelfTradePreventionModes": []string{"EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"},
		}},
	}
}

// binanceFuturesInfo is GET /fapi/v1/exchangeInfo (USDⓈ-M) or
// /dapi/v1/exchangeInfo (COIN-M): one perpetual contract.
func binanceFuturesInfo(coinM bool, now time.Time) map[string]any {
	sym := map[string]any{
		"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
		"onboardDate": 1569398400000, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
		"marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
		"quotePrecision": 8, "underlyingType": "COIN", "triggerProtect": "0.0500",
		"filters": []any{
			map[string]string{"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
			map[string]string{"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
		},
		"orderTypes":  []string{"LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"},
		"timeInForce": []string{"GTC", "IOC", "FOK", "GTX"},
	}
	if coinM {
		sym["symbol"], sym["pair"], sym["quoteAsset"], sym["marginAsset"] = "BTCUSD_PERP", "BTCUSD", "USD", "BTC"
		sym["contractSize"], sym["contractStatus"] = 100, "TRADING"
		delete(sym, "status")
	}
	return map[string]any{
		"timezone": "UTC", "serverTime": now.UnixMilli(), "futuresType": "U_MARGINED",
		"rateLimits":      []any{map[string]any{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}},
		"exchangeFilters": []any{}, "assets": []any{}, "symbols": []any{sym},
	}
}

// binanceCoin is one entry of GET /sapi/v1/capital/config/getall.
func binanceCoin(coin, name, free, withdrawFee string) map[string]any {
	return map[string]any{
		"coin": coin, "name": name, "free": free, "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0",
		"ipoable": "0", "storage": "0", "isLegalMoney": false, "trading": true, "depositAllEnable": true,
		"withdrawAllEnable": true,
		"networkList": []any{map[string]any{
			"network": coin, "coin": coin, "name": name, "isDefault": true, "depositEnable": true, "withdrawEnable": true,
			"withdrawFee": withdrawFee, "withdrawMin": withdrawFee, "withdrawMax": "9999999999.99999999",
			"withdrawIntegerMultiple": "0.00000001", "minConfirm": 1, "unLockConfirm": 2, "busy": false,
			"depositDesc": "", "withdrawDesc": "", "specialTips": "", "sameAddress": false, "estimatedArrivalTime": 25,
		}},
	}
}

func (b *binance) byClientID(cid string) string {
	if cid == "" {
		return ""
	}
	for _, o := range b.vs.openOrders() {
		if o.ClientOrderID == cid {
			return o.ID
		}
	}
	return ""
}

// findOrder returns the order (open or not) with venue order id id, or
// else with client order id cid; empty values match nothing.
func (vs *venueServer) findOrder(id, cid string) (Order, bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for _, o := range vs.orders {
		if id != "" && o.ID == id || id == "" && cid != "" && o.ClientOrderID == cid {
			return *o, true
		}
	}
	return Order{}, false
}

// ordersWhere returns copies of the orders keep accepts, oldest first.
func (vs *venueServer) ordersWhere(keep func(*Order) bool) []Order {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	out := []Order{}
	for _, o := range vs.orders {
		if keep(o) {
			out = append(out, *o)
		}
	}
	return out
}

func binanceOrderJSON(o Order, typ, status string, now time.Time) map[string]any {
	id, _ := strconv.ParseInt(o.ID, 10, 64)
	return map[string]any{
		"symbol": o.Instrument, "orderId": id, "clientOrderId": o.ClientOrderID, "transactTime": now.UnixMilli(),
		"price": o.Price, "origQty": o.Size, "executedQty": "0.00000000", "status": status,
		"timeInForce": "GTC", "type": typ, "side": strings.ToUpper(o.Side),
	}
}

var _ emulator = (*binance)(nil)
