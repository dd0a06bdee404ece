package binance

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/venue"
)

// Credential fields: api_key plus either secret (HMAC) or private_key
// (Ed25519: PKCS#8 PEM, 32-byte seed or its hex).
const (
	FieldAPIKey     = "api_key"
	FieldSecret     = "secret"
	FieldPrivateKey = "private_key"
)

// HeaderAPIKey carries the API key.
const HeaderAPIKey = "X-MBX-APIKEY" // #nosec G101 -- a header name, not a credential

// Defaults.
const (
	DefaultRecvWindow = 5 * time.Second
	DefaultClockSync  = time.Minute
	clockSyncTimeout  = 5 * time.Second
)

// Errors.
var (
	// ErrBody reports a body that is not a form (Binance takes forms only).
	ErrBody = errors.New("binance: body must be application/x-www-form-urlencoded")
	// ErrOrder reports an order.place request without symbol or side, or
	// one keystile cannot tell how Binance would execute.
	ErrOrder = errors.New("binance: order needs symbol and side BUY or SELL")
	// ErrUnreadableOrder reports an order list keystile does not read
	// (OTO, OTOCO, OPO: two orders that may both fill): refused by a
	// policy with order rules rather than passed unchecked.
	ErrUnreadableOrder = errors.New("binance: the orders of this order list cannot be checked")
)

// Operations is Binance spot's operations table, with each route's
// security type: NONE (AuthNone), MARKET_DATA and USER_STREAM (AuthKey:
// the key, no signature), the rest SIGNED.
var Operations = venue.Table{
	{Method: "GET", Path: "/api/v3/ping", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/time", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/exchangeInfo", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/depth", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/trades", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/historicalTrades", Op: venue.OpMarketRead, Auth: venue.AuthKey},
	{Method: "GET", Path: "/api/v3/aggTrades", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/klines", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/uiKlines", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/avgPrice", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/ticker/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/api/v3/account", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/account/commission", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/myTrades", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/myPreventedMatches", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/myAllocations", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/api/v3/rateLimit/order", Op: venue.OpAccountRead},
	{Method: "*", Path: "/api/v3/userDataStream", Op: venue.OpAccountRead, Auth: venue.AuthKey},
	{Method: "GET", Path: "/api/v3/order", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v3/openOrders", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v3/allOrders", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v3/orderList", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v3/allOrderList", Op: venue.OpOrderRead},
	{Method: "GET", Path: "/api/v3/openOrderList", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/api/v3/order", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/order/test", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/order/cancelReplace", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/order/oco", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/orderList/*", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/sor/order", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/api/v3/sor/order/test", Op: venue.OpOrderPlace},
	{Method: "DELETE", Path: "/api/v3/order", Op: venue.OpOrderCancel},
	{Method: "DELETE", Path: "/api/v3/orderList", Op: venue.OpOrderCancel},
	{Method: "DELETE", Path: "/api/v3/openOrders", Op: venue.OpOrderCancelAll},
	{Method: "POST", Path: "/sapi/v1/capital/withdraw/apply", Op: venue.OpWalletWithdraw},
	{Method: "GET", Path: "/sapi/v1/capital/withdraw/history", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/sapi/v1/capital/withdraw/address/list", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/sapi/v1/capital/config/getall", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/sapi/v1/capital/deposit/hisrec", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/sapi/v1/capital/deposit/address", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/sapi/v1/asset/transfer", Op: venue.OpWalletTransfer},
	{Method: "GET", Path: "/sapi/v1/asset/transfer", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/sapi/v1/sub-account/*", Op: venue.OpWalletTransfer},
	{Method: "*", Path: "/sapi/v1/account/apiRestrictions", Op: venue.OpAPIKeyManage},
	{Method: "*", Path: "/sapi/v1/account/apiRestrictions/*", Op: venue.OpAPIKeyManage},
	{Method: "*", Path: "/sapi/v1/account/enableFastWithdrawSwitch", Op: venue.OpAPIKeyManage},
	{Method: "*", Path: "/sapi/v1/account/disableFastWithdrawSwitch", Op: venue.OpAPIKeyManage},
	{Method: "*", Path: "/sapi/v1/userDataStream", Op: venue.OpAccountRead, Auth: venue.AuthKey},
	// What ccxt's loadMarkets reads besides /api/v3/exchangeInfo: margin
	// pairs (MARKET_DATA: key, no signature; isolated: USER_DATA) and the
	// futures hosts' exchange information (public; see SiblingHost).
	{Method: "GET", Path: "/sapi/v1/margin/allPairs", Op: venue.OpMarketRead, Auth: venue.AuthKey},
	{Method: "GET", Path: "/sapi/v1/margin/isolated/allPairs", Op: venue.OpAccountRead},
	{Method: "GET", Path: "/fapi/v1/ping", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/fapi/v1/time", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/fapi/v1/exchangeInfo", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/dapi/v1/ping", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/dapi/v1/time", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "GET", Path: "/dapi/v1/exchangeInfo", Op: venue.OpMarketRead, Auth: venue.AuthNone},
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
	Now         func() time.Time  // if nil, time.Now
	// BaseURL is where GET /api/v3/time is read for the clock offset
	// (e.g. https://api.binance.com); if empty, the scheme and host of the
	// request being signed.
	BaseURL string
	// HTTPClient is the venue's own client (keystile's upstream
	// transport) used for the clock offset; if nil, no offset is measured.
	HTTPClient *http.Client
	// ClockSync is how often the offset is refreshed; if 0,
	// DefaultClockSync; negative disables measuring.
	ClockSync time.Duration
	// RecvWindow sent with signed requests; if 0, DefaultRecvWindow. At
	// most 60 s (Binance's maximum).
	RecvWindow time.Duration
	// Logger; if nil, logs are discarded.
	Logger *slog.Logger
}

// Venue is a Binance spot venue. It is safe for concurrent use.
type Venue struct {
	venue.Kit
	creds      venue.Credentials
	now        func() time.Time
	baseURL    string
	client     *http.Client
	every      time.Duration
	recvWindow string
	log        *slog.Logger
	rl         limiter

	offset   atomic.Int64 // server minus local clock, milliseconds
	syncMu   sync.Mutex
	syncing  bool
	nextSync time.Time
}

// New returns a Binance venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("binance: no credentials")
	}
	if o.RecvWindow < 0 || o.RecvWindow > 60*time.Second {
		return nil, fmt.Errorf("binance: recv window %s outside (0, 60s]", o.RecvWindow)
	}
	v := &Venue{Kit: venue.Kit{Routes: Operations, KeyHeader: HeaderAPIKey, Credentials: []string{HeaderAPIKey}, ClientID: clientID()},
		creds: o.Credentials, now: o.Now, baseURL: strings.TrimRight(o.BaseURL, "/"), client: o.HTTPClient,
		every: o.ClockSync, log: o.Logger}
	if v.baseURL != "" {
		if u, err := url.Parse(v.baseURL); err != nil || u.Host == "" {
			return nil, fmt.Errorf("binance: base url %q is not an absolute url", o.BaseURL)
		}
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.every == 0 {
		v.every = DefaultClockSync
	}
	rw := o.RecvWindow
	if rw == 0 {
		rw = DefaultRecvWindow
	}
	v.recvWindow = strconv.FormatInt(rw.Milliseconds(), 10)
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	return v, nil
}

// ClockOffset is the last measured server-minus-local clock offset.
func (v *Venue) ClockOffset() time.Duration { return time.Duration(v.offset.Load()) * time.Millisecond }

// botParam reports the parameters keystile owns and removes from what a
// bot sent.
func botParam(k string) bool { return k == "signature" || k == "timestamp" || k == "recvWindow" }

// StripParams removes the signature, timestamp and recvWindow pairs from a
// raw parameter string, keeping every other pair in order and byte for
// byte, and percent-encodes non-ASCII bytes, spaces and control bytes.
func StripParams(raw string) string {
	var b strings.Builder
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); botParam(k) || err == nil && botParam(uk) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c <= ' ' || c >= 0x7f {
				fmt.Fprintf(&b, "%%%02X", c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// Payload returns the bytes Binance signs: query then body, no separator.
func Payload(query string, body []byte) []byte {
	return append([]byte(query), body...)
}

// SignHMAC returns hex(HMAC-SHA256(secret, payload)).
func SignHMAC(secretKey, payload []byte) string {
	m := hmac.New(sha256.New, secretKey)
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// signed reports whether a request needs timestamp and signature: every
// route but the public and key-only ones (an unmapped one never gets here).
func signed(method, path string) bool {
	return !Operations.Public(method, path) && !Operations.KeyOnly(method, path)
}

func isJSON(body []byte) bool {
	t := bytes.TrimSpace(body)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	out.Header.Del(HeaderAPIKey)
	if isJSON(body) {
		return ErrBody
	}
	query := StripParams(out.URL.RawQuery)
	nb := []byte(StripParams(string(body)))
	if Public(out.Method, out.URL.EscapedPath()) {
		// Market data goes out as the venue serves it to anyone: no key,
		// no timestamp, no signature (whatever the SDK added is gone).
		setQueryBody(out, query, nb, body)
		return nil
	}
	needSig := signed(out.Method, out.URL.EscapedPath())
	if needSig {
		v.syncClock(ctx, out.URL)
		ts := v.now().UnixMilli() + v.offset.Load()
		if query != "" {
			query += "&"
		}
		query += "recvWindow=" + v.recvWindow + "&timestamp=" + strconv.FormatInt(ts, 10)
	}
	return v.creds(ctx, func(c venue.Credential) error {
		key, err := c.Field(FieldAPIKey)
		if err != nil {
			return fmt.Errorf("binance: credential: %w", err)
		}
		q := query
		if needSig {
			payload := Payload(query, nb)
			var sig string
			if pk, err := c.Field(FieldPrivateKey); err == nil && !pk.IsZero() {
				raw, err := venue.SignEd25519(c, FieldPrivateKey, payload)
				if err != nil {
					return fmt.Errorf("binance: sign: %w", err)
				}
				sig = url.QueryEscape(base64.StdEncoding.EncodeToString(raw))
			} else {
				sec, err := c.Field(FieldSecret)
				if err != nil {
					return fmt.Errorf("binance: credential: %w", err)
				}
				sig = SignHMAC(sec.Reveal(), payload)
			}
			q += "&signature=" + sig
		}
		setQueryBody(out, q, nb, body)
		out.Header.Set(HeaderAPIKey, string(key.Reveal()))
		return nil
	})
}

// setQueryBody puts the query and body keystile sends on out (the body
// only when stripping changed it).
func setQueryBody(out *http.Request, query string, nb, body []byte) {
	out.URL.RawQuery = query
	out.URL.ForceQuery = false
	if !bytes.Equal(nb, body) {
		out.Body = io.NopCloser(bytes.NewReader(nb))
		out.ContentLength = int64(len(nb))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(nb)), nil }
	}
}

// Public reports the routes Binance serves to anyone (security type NONE):
// the market-data reads except historicalTrades and the margin pairs,
// which need the API key (MARKET_DATA). keystile forwards them without
// key, timestamp or signature.
func Public(method, escapedPath string) bool { return Operations.Public(method, escapedPath) }

// syncClock refreshes the clock offset when it is due. One caller
// measures; concurrent callers go on with the previous offset.
func (v *Venue) syncClock(ctx context.Context, target *url.URL) {
	if v.client == nil || v.every < 0 {
		return
	}
	now := v.now()
	v.syncMu.Lock()
	if v.syncing || now.Before(v.nextSync) {
		v.syncMu.Unlock()
		return
	}
	v.syncing = true
	v.syncMu.Unlock()
	err := v.SyncClock(ctx, target)
	v.syncMu.Lock()
	v.syncing = false
	next := v.every
	if err != nil {
		v.log.Warn("binance: clock offset not refreshed", "err", err)
		next = min(next, 10*time.Second)
	}
	v.nextSync = now.Add(next)
	v.syncMu.Unlock()
}

// SyncClock measures the server clock offset now through GET /api/v3/time
// (on BaseURL, else on target's scheme and host).
func (v *Venue) SyncClock(ctx context.Context, target *url.URL) error {
	if v.client == nil {
		return errors.New("binance: clock sync: no http client")
	}
	base := v.baseURL
	if base == "" {
		if target == nil || target.Host == "" {
			return errors.New("binance: clock sync: no base url")
		}
		base = target.Scheme + "://" + target.Host
	}
	ctx, cancel := context.WithTimeout(ctx, clockSyncTimeout)
	defer cancel()
	// The host is the configured base URL or the request's own upstream
	// host, and the client is the venue's upstream transport (allowlist).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v3/time", nil) // #nosec G704 -- see above
	if err != nil {
		return fmt.Errorf("binance: clock sync: %w", err)
	}
	t0 := v.now()
	resp, err := v.client.Do(req) // #nosec G704 -- venue host through the venue's own client
	if err != nil {
		return fmt.Errorf("binance: clock sync: %w", err)
	}
	defer resp.Body.Close()
	t1 := v.now()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("binance: clock sync: status %d", resp.StatusCode)
	}
	var st struct {
		ServerTime int64 `json:"serverTime"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&st); err != nil || st.ServerTime <= 0 {
		return fmt.Errorf("binance: clock sync: malformed answer")
	}
	mid := t0.UnixMilli() + t1.Sub(t0).Milliseconds()/2
	v.offset.Store(st.ServerTime - mid)
	return nil
}

var (
	_ venue.Venue        = (*Venue)(nil)
	_ venue.Normalizer   = (*Venue)(nil)
	_ venue.TokenCarrier = (*Venue)(nil)
	_ venue.RateLimiter  = (*Venue)(nil)
)
