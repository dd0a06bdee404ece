package kraken

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
)

// Credential fields.
const (
	FieldAPIKey = "api_key"
	FieldSecret = "secret" // base64, as Kraken shows it
)

// Header names.
const (
	HeaderAPIKey  = "API-Key"
	HeaderAPISign = "API-Sign"
)

// DefaultNonceBlock is how far ahead the nonce high-water mark is persisted.
const DefaultNonceBlock = 10000

// Errors.
var (
	// ErrSecretEncoding reports a secret that is not base64.
	ErrSecretEncoding = errors.New("kraken: secret is not base64")
	// ErrBody reports a private request whose body is not a form.
	ErrBody = errors.New("kraken: private request body must be application/x-www-form-urlencoded")
	// ErrUnreadableOrder reports an order.place request whose order fields
	// keystile cannot read (AddOrderBatch, AmendOrder): refused rather than
	// passed unchecked by policy limits.
	ErrUnreadableOrder = errors.New("kraken: order fields of this endpoint cannot be checked")
	// ErrNonceExhausted reports a nonce counter at its maximum.
	ErrNonceExhausted = errors.New("kraken: nonce space exhausted")
)

// Operations is Kraken's spot REST operations table.
var Operations = venue.Table{
	// Kraken serves its public market data to GET and POST alike.
	{Method: "GET", Path: "/0/public/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "POST", Path: "/0/public/*", Op: venue.OpMarketRead, Auth: venue.AuthNone},
	{Method: "POST", Path: "/0/private/Balance", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/BalanceEx", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/ExtendedBalance", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/TradeBalance", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/TradesHistory", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/QueryTrades", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/Ledgers", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/QueryLedgers", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/TradeVolume", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/DepositMethods", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/DepositAddresses", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/DepositStatus", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/WithdrawStatus", Op: venue.OpAccountRead},
	{Method: "POST", Path: "/0/private/OpenOrders", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/0/private/ClosedOrders", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/0/private/QueryOrders", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/0/private/OpenPositions", Op: venue.OpOrderRead},
	{Method: "POST", Path: "/0/private/AddOrder", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/0/private/AddOrderBatch", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/0/private/EditOrder", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/0/private/AmendOrder", Op: venue.OpOrderPlace},
	{Method: "POST", Path: "/0/private/CancelOrder", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/0/private/CancelOrderBatch", Op: venue.OpOrderCancel},
	{Method: "POST", Path: "/0/private/CancelAll", Op: venue.OpOrderCancelAll},
	{Method: "POST", Path: "/0/private/CancelAllOrdersAfter", Op: venue.OpOrderCancelAll},
	{Method: "POST", Path: "/0/private/Withdraw", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/0/private/WithdrawCancel", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/0/private/WithdrawInfo", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/0/private/WithdrawMethods", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/0/private/WithdrawAddresses", Op: venue.OpWalletWithdraw},
	{Method: "POST", Path: "/0/private/WalletTransfer", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/0/private/AccountTransfer", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/0/private/Earn/Allocate", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/0/private/Earn/Deallocate", Op: venue.OpWalletTransfer},
	{Method: "POST", Path: "/0/private/CreateSubaccount", Op: venue.OpAPIKeyManage},
	{Method: "POST", Path: "/0/private/GetWebSocketsToken", Op: venue.OpAPIKeyManage},
}

// NonceStore persists nonce high-water marks so nonces keep increasing
// across restarts. Implementations are safe for concurrent use (also by
// several processes sharing the store).
type NonceStore interface {
	// Reserve atomically reserves the next size nonces of key at or above
	// atLeast: lo = max(stored+1, atLeast), hi = lo+size-1, and the stored
	// high-water mark becomes hi before Reserve returns. size >= 1.
	Reserve(ctx context.Context, key string, atLeast, size uint64) (lo, hi uint64, err error)
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
	Now         func() time.Time  // if nil, time.Now
	// Nonces persists nonce reservations; if nil, nonces follow the wall
	// clock in microseconds (see the package doc).
	Nonces NonceStore
	// NonceBlock is the reservation size; if 0, DefaultNonceBlock.
	NonceBlock uint64
	// Tier is the account's verification tier for the rate limiter:
	// "starter" (default), "intermediate", "pro", or "none" (no local
	// counter model; the venue's 429 back-off is still honoured).
	Tier string
	// Logger; if nil, logs are discarded.
	Logger *slog.Logger
}

// Venue is a Kraken spot REST venue. It is safe for concurrent use.
type Venue struct {
	venue.Kit
	seq   chan struct{} // one private request in flight: nonces arrive in order
	creds venue.Credentials
	now   func() time.Time
	store NonceStore
	block uint64
	log   *slog.Logger
	rl    *limiter

	mu     sync.Mutex
	nonces map[string]*counter
}

type counter struct {
	mu   sync.Mutex
	next uint64 // next nonce to hand out
	hi   uint64 // last reserved nonce (0: nothing reserved yet)
}

// New returns a Kraken venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("kraken: no credentials")
	}
	rl, err := newLimiter(o.Tier)
	if err != nil {
		return nil, err
	}
	v := &Venue{Kit: venue.Kit{Routes: Operations, KeyHeader: HeaderAPIKey, Credentials: []string{HeaderAPIKey, HeaderAPISign}, ClientID: clientID()},
		seq: make(chan struct{}, 1), creds: o.Credentials, now: o.Now, store: o.Nonces, block: o.NonceBlock, log: o.Logger, rl: rl,
		nonces: map[string]*counter{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.block == 0 {
		v.block = DefaultNonceBlock
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	return v, nil
}

// Sign returns API-Sign for uriPath and the exact postdata, whose nonce
// field is nonce. secret is the raw (base64-decoded) secret.
func Sign(secretKey []byte, uriPath, nonce string, postdata []byte) string {
	h := sha256.New()
	h.Write([]byte(nonce))
	h.Write(postdata)
	m := hmac.New(sha512.New, secretKey)
	m.Write([]byte(uriPath))
	m.Write(h.Sum(nil))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// WithNonce returns the form body with every "nonce" field removed and
// "nonce=<nonce>" as its first field; other fields keep their order and
// encoding.
func WithNonce(body []byte, nonce string) []byte {
	out := make([]byte, 0, len(body)+len(nonce)+7)
	out = append(out, "nonce="...)
	out = append(out, nonce...)
	for _, p := range bytes.Split(body, []byte("&")) {
		if len(p) == 0 {
			continue
		}
		k, _, _ := bytes.Cut(p, []byte("="))
		if uk, err := url.QueryUnescape(string(k)); err == nil && uk == "nonce" || string(k) == "nonce" {
			continue
		}
		out = append(out, '&')
		out = append(out, p...)
	}
	return out
}

// Authenticate implements venue.Venue. Public requests get no credential;
// private ones get a fresh nonce (replacing the bot's) and API-Key/API-Sign.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	out.Header.Del(HeaderAPIKey)
	out.Header.Del(HeaderAPISign)
	if !strings.Contains(out.URL.Path, "/private/") {
		return nil
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return ErrBody
	}
	if _, err := url.ParseQuery(string(body)); err != nil {
		return fmt.Errorf("%w: %w", ErrBody, err)
	}
	return v.creds(ctx, func(c venue.Credential) error {
		f, err := venue.CredentialFields(c, FieldAPIKey, FieldSecret)
		if err != nil {
			return fmt.Errorf("kraken: %w", err)
		}
		key, sec := f[0], f[1]
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sec.Reveal())))
		if err != nil {
			return ErrSecretEncoding
		}
		defer secret.Wipe(raw)
		n, err := v.nonce(ctx, keyID(key))
		if err != nil {
			return err
		}
		ns := strconv.FormatUint(n, 10)
		nb := WithNonce(body, ns)
		out.Body = io.NopCloser(bytes.NewReader(nb))
		out.ContentLength = int64(len(nb))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(nb)), nil }
		if out.Header.Get("Content-Type") == "" {
			out.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		out.Header.Set(HeaderAPIKey, string(key.Reveal()))
		out.Header.Set(HeaderAPISign, Sign(raw, out.URL.EscapedPath(), ns, nb))
		return nil
	})
}

// keyID names an API key in the nonce store without revealing it.
func keyID(key secret.Value) string {
	s := sha256.Sum256(key.Reveal())
	return "kraken:" + hex.EncodeToString(s[:12])
}

// nonce hands out the next nonce of key.
func (v *Venue) nonce(ctx context.Context, key string) (uint64, error) {
	v.mu.Lock()
	c, ok := v.nonces[key]
	if !ok {
		c = &counter{}
		v.nonces[key] = c
	}
	v.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	micros := uint64(max(v.now().UnixMicro(), 0)) // #nosec G115 -- clamped to >= 0
	if v.store == nil {
		n := max(c.next, micros)
		if n == ^uint64(0) {
			return 0, ErrNonceExhausted
		}
		c.next = n + 1
		return n, nil
	}
	if c.hi == 0 || c.next > c.hi {
		at := max(c.next, micros)
		if at > ^uint64(0)-v.block {
			return 0, ErrNonceExhausted
		}
		lo, hi, err := v.store.Reserve(ctx, key, at, v.block)
		if err != nil {
			return 0, fmt.Errorf("kraken: reserve nonces: %w", err)
		}
		if lo < at || hi < lo {
			return 0, fmt.Errorf("kraken: reserve nonces: store returned [%d, %d] below %d", lo, hi, at)
		}
		c.next, c.hi = lo, hi
		v.log.Debug("kraken: nonce block reserved", "key", key, "lo", lo, "hi", hi)
	}
	n := c.next
	c.next++
	return n, nil
}

// orderFields are the AddOrder and EditOrder fields keystile reads.
var orderFields = []string{"pair", "type", "ordertype", "volume", "price", "price2", "cl_ord_id", "userref", "oflags"}

// forms returns a lookup of orderFields over the form body and the query
// (a parameter in both, twice in one, or a read field in another letter
// case is a venue.ErrDuplicateParam).
func forms(rawQuery string, body []byte) (func(string) string, error) {
	if t := bytes.TrimSpace(body); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return nil, ErrBody
	}
	vals, err := venue.FormFields(rawQuery, body, func(k string) bool { return k == "nonce" }, orderFields...)
	if err != nil {
		return nil, fmt.Errorf("kraken: order: %w", err)
	}
	return func(k string) string {
		for i, n := range orderFields {
			if n == k {
				return vals[i]
			}
		}
		return ""
	}, nil
}

// Allow implements venue.RateLimiter.
func (v *Venue) Allow(op string, now time.Time) (time.Duration, bool) { return v.rl.allow(op, now) }

// Observe implements venue.RateLimiter.
func (v *Venue) Observe(resp *http.Response, now time.Time) { v.rl.observe(resp, now) }

// ObserveAnswer implements venue.AnswerObserver: Kraken's rate-limit
// errors come in an HTTP 200's error list.
func (v *Venue) ObserveAnswer(_ *http.Response, body []byte, now time.Time) time.Duration {
	return v.rl.observeAnswer(body, now)
}

// ShareLimits implements venue.LimitSharer: Kraken sends no usage
// headers, so each of n replicas on one API key counts its own calls
// against 1/n of each counter (its maximum and its decay).
func (v *Venue) ShareLimits(n int) { v.rl.share(n) }

var (
	_ venue.Venue          = (*Venue)(nil)
	_ venue.Normalizer     = (*Venue)(nil)
	_ venue.TokenCarrier   = (*Venue)(nil)
	_ venue.RateLimiter    = (*Venue)(nil)
	_ venue.AnswerObserver = (*Venue)(nil)
	_ venue.LimitSharer    = (*Venue)(nil)
)

// Sequence implements venue.Sequencer: private requests are signed and sent
// one at a time, so the venue receives nonces in the order they were issued
// (Kraken refuses a nonce not above the last one it saw for the key).
// Public requests are not sequenced.
func (v *Venue) Sequence(ctx context.Context, out *http.Request) (func(), error) {
	if !strings.Contains(out.URL.Path, "/private/") {
		return func() {}, nil
	}
	select {
	case v.seq <- struct{}{}:
		return func() { <-v.seq }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var _ venue.Sequencer = (*Venue)(nil)
