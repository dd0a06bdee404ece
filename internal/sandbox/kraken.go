package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kraken verification errors; KrakenErrorText maps them to Kraken's own
// error strings.
var (
	ErrKrakenKey       = errors.New("sandbox: kraken: invalid key")
	ErrKrakenSignature = errors.New("sandbox: kraken: invalid signature")
	ErrKrakenNonce     = errors.New("sandbox: kraken: invalid nonce")
)

// KrakenErrorText is Kraken's error string for a verification error.
func KrakenErrorText(err error) string {
	switch {
	case errors.Is(err, ErrKrakenKey):
		return "EAPI:Invalid key"
	case errors.Is(err, ErrKrakenNonce):
		return "EAPI:Invalid nonce"
	default:
		return "EAPI:Invalid signature"
	}
}

// KrakenSignature returns base64(HMAC-SHA512(secret, uriPath +
// SHA256(nonce + postdata))), the value of API-Sign. secret is the decoded
// secret.
func KrakenSignature(secretKey []byte, uriPath, nonce string, postdata []byte) string {
	inner := sha256.Sum256(append([]byte(nonce), postdata...))
	m := hmac.New(sha512.New, secretKey)
	m.Write([]byte(uriPath))
	m.Write(inner[:])
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// VerifyKraken checks a private request: API-Key must be apiKey, the form
// body must hold a decimal "nonce", and API-Sign must be KrakenSignature
// over uriPath (the path as sent) and the exact body. It returns the nonce;
// monotonicity is the caller's (per key) business.
func VerifyKraken(uriPath string, body []byte, headers http.Header, apiKey string, secretKey []byte) (uint64, error) {
	key, sig := headers.Get("API-Key"), headers.Get("API-Sign")
	if key == "" || subtle.ConstantTimeCompare([]byte(key), []byte(apiKey)) != 1 {
		return 0, ErrKrakenKey
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return 0, ErrKrakenSignature
	}
	ns := form.Get("nonce")
	nonce, err := strconv.ParseUint(ns, 10, 64)
	if err != nil || len(form["nonce"]) != 1 {
		return 0, ErrKrakenNonce
	}
	want := KrakenSignature(secretKey, uriPath, ns, body)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return 0, ErrKrakenSignature
	}
	return nonce, nil
}

// krakenTier returns Kraken's REST rate counter of a tier (max, decay per
// second). The emulator enforces it only when Options.Credentials name a
// "tier" for it: an emulator setting, not a credential field, so it is not
// in VenueInfo.Credentials (which are stored in the vault as they are).
func krakenTier(name string) ([2]float64, bool) {
	switch name {
	case "starter":
		return [2]float64{15, 0.33}, true
	case "intermediate":
		return [2]float64{20, 0.5}, true
	case "pro":
		return [2]float64{20, 1}, true
	}
	return [2]float64{}, false
}

type kraken struct {
	vs     *venueServer
	apiKey string
	secret []byte
	tier   string

	mu        sync.Mutex
	lastNonce uint64
	nonces    []uint64 // every accepted nonce, in arrival order
	counter   float64
	counterAt time.Time
}

func newKraken(vs *venueServer, creds map[string]string) (*kraken, error) {
	k := &kraken{vs: vs, apiKey: creds["api_key"], tier: creds["tier"]}
	if k.apiKey == "" {
		b := make([]byte, 42)
		_, _ = rand.Read(b)
		k.apiKey = base64.StdEncoding.EncodeToString(b)
	}
	if s := creds["secret"]; s != "" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("%w: kraken secret must be base64", ErrBadCredentials)
		}
		k.secret = b
	} else {
		k.secret = make([]byte, 64)
		_, _ = rand.Read(k.secret)
	}
	if _, ok := krakenTier(k.tier); k.tier != "" && !ok {
		return nil, fmt.Errorf("%w: kraken tier %q", ErrBadCredentials, k.tier)
	}
	return k, nil
}

func (k *kraken) credentials() map[string]string {
	c := map[string]string{"api_key": k.apiKey, "secret": base64.StdEncoding.EncodeToString(k.secret)}
	return c
}
func (k *kraken) credentialHeaders() []string { return []string{"API-Key", "API-Sign"} }
func (k *kraken) expireSessions()             {}

// KrakenNonces returns the nonces the Kraken emulator accepted, in arrival
// order (nil if it is not running).
func (s *Server) KrakenNonces() []uint64 {
	vs, ok := s.venues[VenueKraken]
	if !ok {
		return nil
	}
	k, ok := vs.emu.(*kraken)
	if !ok {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]uint64(nil), k.nonces...)
}

func krakenReply(w http.ResponseWriter, code int, errs []string, result any) {
	m := map[string]any{"error": errs}
	if errs == nil {
		m["error"] = []string{}
	}
	if result != nil {
		m["result"] = result
	}
	writeJSON(w, code, m)
}

func (k *kraken) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/0/public/"):
		k.public(w, r, strings.TrimPrefix(path, "/0/public/"))
		return
	case strings.HasPrefix(path, "/0/private/") && r.Method == http.MethodPost:
	default:
		k.vs.count("not_found")
		krakenReply(w, http.StatusNotFound, []string{"EGeneral:Unknown method"}, nil)
		return
	}
	method := strings.TrimPrefix(path, "/0/private/")
	switch method {
	case "Balance", "BalanceEx", "AddOrder", "CancelOrder", "CancelAll", "OpenOrders", "ClosedOrders":
	default:
		k.vs.count("not_found")
		krakenReply(w, http.StatusNotFound, []string{"EGeneral:Unknown method"}, nil)
		return
	}
	k.vs.count(method)
	nonce, err := VerifyKraken(r.URL.EscapedPath(), body, r.Header, k.apiKey, k.secret)
	k.mu.Lock()
	if err == nil && nonce <= k.lastNonce {
		err = ErrKrakenNonce
	}
	if err == nil && !k.charge(method) {
		k.mu.Unlock()
		krakenReply(w, http.StatusOK, []string{"EAPI:Rate limit exceeded"}, nil)
		return
	}
	if err == nil {
		k.lastNonce = nonce
		k.nonces = append(k.nonces, nonce)
	}
	k.mu.Unlock()
	if err != nil {
		k.vs.authFailure()
		krakenReply(w, http.StatusOK, []string{KrakenErrorText(err)}, nil)
		return
	}
	form, _ := url.ParseQuery(string(body)) // VerifyKraken parsed it already
	switch method {
	case "Balance":
		krakenReply(w, http.StatusOK, nil, map[string]string{"ZUSD": "150000.0000", "XXBT": "2.5000000000", "XETH": "40.0000000000"})
	case "BalanceEx":
		// The extended balance: each asset's balance and what open
		// orders hold of it.
		held := map[string]float64{}
		for _, o := range k.vs.openOrders() {
			p, _ := strconv.ParseFloat(o.Price, 64)
			v, _ := strconv.ParseFloat(o.Size, 64)
			if o.Side == "buy" {
				held["ZUSD"] += p * v
			} else {
				held["XXBT"] += v
			}
		}
		krakenReply(w, http.StatusOK, nil, map[string]any{
			"ZUSD": map[string]string{"balance": "150000.0000", "hold_trade": strconv.FormatFloat(held["ZUSD"], 'f', 4, 64)},
			"XXBT": map[string]string{"balance": "2.5000000000", "hold_trade": strconv.FormatFloat(held["XXBT"], 'f', 10, 64)},
			"XETH": map[string]string{"balance": "40.0000000000", "hold_trade": "0.0000000000"},
		})
	case "AddOrder":
		side, typ := form.Get("type"), form.Get("ordertype")
		if form.Get("pair") == "" || (side != "buy" && side != "sell") || typ == "" || form.Get("volume") == "" {
			krakenReply(w, http.StatusOK, []string{"EGeneral:Invalid arguments"}, nil)
			return
		}
		cid := form.Get("cl_ord_id")
		if cid == "" {
			cid = form.Get("userref")
		}
		o := k.vs.addOrder("O", Order{ClientOrderID: cid, Instrument: form.Get("pair"), Side: side, Price: form.Get("price"), Size: form.Get("volume")})
		descr := fmt.Sprintf("%s %s %s @ %s %s", side, form.Get("volume"), form.Get("pair"), typ, form.Get("price"))
		krakenReply(w, http.StatusOK, nil, map[string]any{"descr": map[string]string{"order": strings.TrimSpace(descr)}, "txid": []string{o.ID}})
	case "CancelOrder":
		id := form.Get("txid")
		if id == "" {
			id = k.byClientID(form.Get("cl_ord_id"))
		}
		if _, ok := k.vs.cancelOrder(id); !ok {
			krakenReply(w, http.StatusOK, []string{"EOrder:Unknown order"}, nil)
			return
		}
		krakenReply(w, http.StatusOK, nil, map[string]int{"count": 1})
	case "CancelAll":
		n := 0
		for _, o := range k.vs.openOrders() {
			if _, ok := k.vs.cancelOrder(o.ID); ok {
				n++
			}
		}
		krakenReply(w, http.StatusOK, nil, map[string]int{"count": n})
	case "OpenOrders", "ClosedOrders":
		// Both take cl_ord_id as a filter; ClosedOrders lists the cancelled
		// orders (the emulator fills nothing) with their count.
		cid, closed := form.Get("cl_ord_id"), method == "ClosedOrders"
		list := map[string]any{}
		for _, o := range k.vs.ordersWhere(func(o *Order) bool {
			return (o.Status == OrderCancelled) == closed && (cid == "" || o.ClientOrderID == cid)
		}) {
			status := "open"
			if closed {
				status = "canceled"
			}
			list[o.ID] = map[string]any{
				"status": status, "cl_ord_id": o.ClientOrderID, "vol": o.Size, "vol_exec": "0",
				"opentm": float64(o.Placed.UnixMilli()) / 1000,
				"descr":  map[string]string{"pair": o.Instrument, "type": o.Side, "price": o.Price},
			}
		}
		if closed {
			krakenReply(w, http.StatusOK, nil, map[string]any{"closed": list, "count": len(list)})
			return
		}
		krakenReply(w, http.StatusOK, nil, map[string]any{"open": list})
	}
}

// charge applies Kraken's REST counter (orders excepted) when a tier is
// set; it reports whether the call is within the limit. k.mu is held.
func (k *kraken) charge(method string) bool {
	t, ok := krakenTier(k.tier)
	if !ok || method == "AddOrder" || method == "CancelOrder" {
		return true
	}
	now := k.vs.clock()
	if !k.counterAt.IsZero() {
		k.counter = max(0, k.counter-now.Sub(k.counterAt).Seconds()*t[1])
	}
	k.counterAt = now
	if k.counter+1 > t[0] {
		return false
	}
	k.counter++
	return true
}

func (k *kraken) byClientID(cid string) string {
	if cid == "" {
		return ""
	}
	for _, o := range k.vs.openOrders() {
		if o.ClientOrderID == cid {
			return o.ID
		}
	}
	return ""
}

func (k *kraken) public(w http.ResponseWriter, r *http.Request, method string) {
	switch method {
	case "Time":
		k.vs.count("Time")
		now := k.vs.clock().UTC()
		krakenReply(w, http.StatusOK, nil, map[string]any{"unixtime": now.Unix(), "rfc1123": now.Format(time.RFC1123)})
	case "Ticker":
		k.vs.count("Ticker")
		pair := r.URL.Query().Get("pair")
		if pair == "" {
			pair = "XBTUSD"
		}
		krakenReply(w, http.StatusOK, nil, map[string]any{pair: map[string]any{
			"a": []string{"37500.10000", "1", "1.000"}, "b": []string{"37500.00000", "2", "2.000"},
			"c": []string{"37500.00000", "0.01000000"}, "v": []string{"1200.5", "3400.1"},
		}})
	case "Assets":
		k.vs.count("Assets")
		krakenReply(w, http.StatusOK, nil, map[string]any{
			"XXBT": map[string]any{"aclass": "currency", "altname": "XBT", "decimals": 10, "display_decimals": 5, "collateral_value": 1, "status": "enabled"},
			"ZUSD": map[string]any{"aclass": "currency", "altname": "USD", "decimals": 4, "display_decimals": 2, "collateral_value": 1, "status": "enabled"},
			"XETH": map[string]any{"aclass": "currency", "altname": "ETH", "decimals": 10, "display_decimals": 5, "collateral_value": 1, "status": "enabled"},
		})
	case "AssetPairs":
		k.vs.count("AssetPairs")
		krakenReply(w, http.StatusOK, nil, map[string]any{"XXBTZUSD": map[string]any{
			"altname": "XBTUSD", "wsname": "XBT/USD", "aclass_base": "currency", "base": "XXBT", "aclass_quote": "currency",
			"quote": "ZUSD", "lot": "unit", "cost_decimals": 5, "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1,
			"leverage_buy": []int{2, 3, 4, 5}, "leverage_sell": []int{2, 3, 4, 5},
			"fees":                [][]float64{{0, 0.4}, {10000, 0.35}, {50000, 0.24}},
			"fees_maker":          [][]float64{{0, 0.25}, {10000, 0.2}, {50000, 0.14}},
			"fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40, "ordermin": "0.00005", "costmin": "0.5",
			"tick_size": "0.1", "status": "online",
		}})
	default:
		k.vs.count("not_found")
		krakenReply(w, http.StatusNotFound, []string{"EGeneral:Unknown method"}, nil)
	}
}

var _ emulator = (*kraken)(nil)
