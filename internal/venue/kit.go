package venue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/secret"
)

// The venue kit: what the exchange packages (binance, kraken, okx, bybit,
// coinbase) share, as declarative tables and one mechanism each, so that a
// new exchange is a route table, a client order id field, a ticker and its
// signer. Each package keeps only what is its own (signature scheme,
// order normalizer, rate-limit model, error shapes).
//
//   - Route.Auth in the operations Table says how a route is
//     authenticated (signed, API key only, public): Table.Public and
//     Table.KeyOnly answer from it.
//   - ClientID places keystile's client order id in an order placement
//     (a JSON member, or a form parameter with the venue's precedence of
//     query and body).
//   - Ticker reads a reference price from a public ticker answer,
//     described by the JSON paths of its status, entries, symbol and
//     price.
//   - WindowLimiter counts requests per class in fixed windows and backs
//     off after HTTP 429 (RetryAfter).
//   - CredentialFields opens the named fields of a credential.

// Route authentication classes (Route.Auth). The zero value is signed:
// a route added without thought is never sent unsigned.
const (
	AuthSigned = iota // key, timestamp and signature
	AuthKey           // the API key alone (Binance MARKET_DATA, user data streams)
	AuthNone          // public: no credential at all
)

// Find returns the first route of t matching method and path (the escaped
// path; a trailing slash is ignored).
func (t Table) Find(method, path string) (Route, bool) {
	p := strings.Trim(path, "/")
	for _, r := range t {
		if r.Method != "*" && r.Method != method {
			continue
		}
		if match(strings.Trim(r.Path, "/"), p) {
			return r, true
		}
	}
	return Route{}, false
}

// Public reports a mapped route the venue serves to anyone (AuthNone):
// keystile forwards it with no credential.
func (t Table) Public(method, path string) bool {
	r, ok := t.Find(method, path)
	return ok && r.Auth == AuthNone
}

// KeyOnly reports a mapped route that takes the API key but no signature
// (AuthKey).
func (t Table) KeyOnly(method, path string) bool {
	r, ok := t.Find(method, path)
	return ok && r.Auth == AuthKey
}

// Client order id placements (ClientID.Place).
const (
	// InJSON: a top-level member of a JSON object body. A body with the
	// member twice, a duplicate key anywhere, or the name in another
	// letter case is refused (venue.ErrDuplicateParam), as the
	// normalizers refuse it: it is not rewritten either.
	InJSON = iota
	// InFormQueryFirst: a form parameter; the venue reads the query
	// before the body (Binance). An existing parameter is replaced where
	// the bot put it (the query's wins, the body's copies go); a new one
	// goes in the body, or in the query when the body is empty.
	InFormQueryFirst
	// InFormBodyFirst: a form parameter; the venue reads the body before
	// the query (Kraken). The body's parameter wins (the query's copies
	// go); a query parameter is kept only when there is no body; a new one
	// goes in the body.
	InFormBodyFirst
)

// ClientID describes an order placement's client order id field.
type ClientID struct {
	Field string // member or parameter name
	UUID  bool   // ids are UUIDs (else 32 hex digits)
	Place int    // InJSON, InFormQueryFirst or InFormBodyFirst
}

// New formats seed as an id for the field (see ClientOrderIDs).
func (c ClientID) New(seed [16]byte) string {
	if c.UUID {
		return UUID(seed)
	}
	return HexID(seed)
}

// Set puts id in r's field, rewriting r.Body and r.RawQuery in place (see
// ClientOrderIDs.SetClientOrderID); every other copy of the field goes.
// A JSON placement fails with ErrNotJSONObject for a body that is not one
// JSON object, and with ErrDuplicateParam as InJSON says. The caller has
// checked that r is an order placement that takes the field.
func (c ClientID) Set(r *Request, id string) error {
	if c.Place == InJSON {
		if _, err := JSONFields(r.Body, c.Field); err != nil {
			return err
		}
		b, err := SetJSONMember(r.Body, c.Field, id, func(k string) bool { return k == c.Field })
		if err != nil {
			return err
		}
		r.Body = b
		return nil
	}
	q, body := r.RawQuery, string(r.Body)
	bodyEmpty := strings.TrimSpace(body) == ""
	switch {
	case c.Place == InFormQueryFirst && HasFormParam(q, c.Field):
		q, _ = SetFormParam(q, c.Field, id)
		body = DropFormParam(body, c.Field)
	case c.Place == InFormQueryFirst && HasFormParam(body, c.Field):
		body, _ = SetFormParam(body, c.Field, id)
	case c.Place == InFormQueryFirst && bodyEmpty:
		q = AppendFormParam(q, c.Field, id)
	case c.Place == InFormQueryFirst:
		body = AppendFormParam(body, c.Field, id)
	case HasFormParam(body, c.Field):
		body, _ = SetFormParam(body, c.Field, id)
		q = DropFormParam(q, c.Field)
	case HasFormParam(q, c.Field) && bodyEmpty:
		q, _ = SetFormParam(q, c.Field, id)
	default:
		q = DropFormParam(q, c.Field)
		body = AppendFormParam(body, c.Field, id)
	}
	r.RawQuery = q
	if body != string(r.Body) {
		r.Body = []byte(body)
	}
	return nil
}

// Ticker describes a venue's public ticker for reference prices (see
// PriceReference): where to ask, and where the answer holds the price.
// Paths are JSON member names (string) and array indexes (int).
type Ticker struct {
	Venue string // names the venue in errors
	Path  string // escaped path of the ticker, e.g. /api/v3/ticker/price
	Query string // fixed query before the instrument, e.g. "category=spot&"
	Param string // the instrument's query parameter ("": see InPath)
	// InPath puts the instrument, path-escaped, at the end of Path instead
	// (Coinbase's /market/products/<product_id>).
	InPath bool
	// Status, if set, is the path of a status member that must hold
	// StatusOK (a string or a number's text).
	Status   []any
	StatusOK string
	// Errors, if set, is the path of a list of errors that must be empty.
	Errors []any
	// Entries is the path of the entries: an array holding exactly one,
	// or with Keyed an object of entries keyed by the venue's pair name
	// (a single one is taken whatever its key, else the one named as the
	// instrument). Empty: the answer is the entry.
	Entries []any
	Keyed   bool
	// Symbol, if set, is an entry's member naming the instrument; when
	// present it must be the instrument (case aside).
	Symbol string
	// Price is the path of the price within an entry: a JSON string, as
	// venues document it; with Numbers a JSON number's exact text too.
	Price   []any
	Numbers bool
}

// Request returns the ticker request of instrument (upper-cased, as
// exchanges spell symbols).
func (t Ticker) Request(instrument string) (method, path, rawQuery string) {
	if t.InPath {
		return http.MethodGet, t.Path + url.PathEscape(strings.ToUpper(instrument)), strings.TrimSuffix(t.Query, "&")
	}
	return http.MethodGet, t.Path, t.Query + t.Param + "=" + url.QueryEscape(strings.ToUpper(instrument))
}

// Parse reads the price from a ticker answer, exactly as the venue wrote
// it (a JSON string; with Numbers also a number's decimal text).
func (t Ticker) Parse(instrument string, body []byte) (string, error) {
	fail := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf(t.Venue+": ticker: "+format, a...)
	}
	// JSON text is UTF-8 (RFC 8259 §8.1). encoding/json would replace
	// invalid bytes with U+FFFD, and the price would no longer be the
	// venue's own text.
	if !utf8.Valid(body) {
		return fail("answer is not valid UTF-8")
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || dec.More() {
		return fail("%w", ErrNotJSONObject)
	}
	if len(t.Status) > 0 {
		if s, ok := scalar(at(doc, t.Status)); !ok || s != t.StatusOK {
			return fail("status %q, want %q", s, t.StatusOK)
		}
	}
	if len(t.Errors) > 0 {
		if l, _ := at(doc, t.Errors).([]any); len(l) > 0 {
			s, _ := scalar(l[0])
			return fail("error %q", s)
		}
	}
	entry := at(doc, t.Entries)
	switch e := entry.(type) {
	case []any:
		if len(e) != 1 {
			return fail("%d entries, want 1", len(e))
		}
		entry = e[0]
	case map[string]any:
		if t.Keyed {
			switch {
			case len(e) == 0:
				return fail("no entry")
			case len(e) == 1:
				for _, v := range e {
					entry = v
				}
			default:
				v, ok := e[strings.ToUpper(instrument)]
				if !ok {
					return fail("%d entries, none named %q", len(e), instrument)
				}
				entry = v
			}
		}
	default:
		return fail("no entries")
	}
	if t.Symbol != "" {
		if s, _ := scalar(at(entry, []any{t.Symbol})); s != "" && !strings.EqualFold(s, instrument) {
			return fail("answer is for %q, not %q", s, instrument)
		}
	}
	v := at(entry, t.Price)
	p, ok := v.(string)
	if n, isNum := v.(json.Number); isNum && t.Numbers {
		p, ok = n.String(), true
	}
	if !ok || p == "" {
		return fail("no price")
	}
	return p, nil
}

// at walks doc along path (member names and indexes); nil when absent.
func at(doc any, path []any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := doc.(map[string]any)
			if !ok {
				return nil
			}
			doc = m[k]
		case int:
			a, ok := doc.([]any)
			if !ok || k < 0 || k >= len(a) {
				return nil
			}
			doc = a[k]
		default:
			return nil
		}
	}
	return doc
}

// scalar renders a decoded JSON string or number (json.Number) as text.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// RetryAfter reads a 429 answer's Retry-After seconds: def when absent or
// not a positive number, at most max.
func RetryAfter(resp *http.Response, def, max time.Duration) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || s <= 0 {
		return def
	}
	return min(time.Duration(s)*time.Second, max)
}

// WindowLimiter is a RateLimiter of fixed windows: requests of each class
// are counted per Window and refused within 5% of the class's limit; an
// HTTP 429 answer blocks every class for its Retry-After (Backoff when it
// has none, at most MaxBackoff). The zero value is not usable: set Window,
// Limit and Backoff. It is safe for concurrent use.
type WindowLimiter struct {
	Window     time.Duration
	Limit      func(class string) int
	Backoff    time.Duration
	MaxBackoff time.Duration

	mu     sync.Mutex
	share  int // replicas sharing the key (0, 1: none)
	counts map[string]int
	starts map[string]time.Time
	until  time.Time
}

// Allow counts a request of class at now, or says how long to wait.
func (l *WindowLimiter) Allow(class string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.until) {
		return l.until.Sub(now), false
	}
	if l.counts == nil {
		l.counts, l.starts = map[string]int{}, map[string]time.Time{}
	}
	limit := l.Limit(class)
	if l.share > 1 {
		limit = max(1, limit/l.share)
	}
	if start, ok := l.starts[class]; !ok || now.Sub(start) >= l.Window || now.Before(start) {
		l.starts[class], l.counts[class] = now, 0
	}
	if l.counts[class] >= limit-limit/20 {
		return l.starts[class].Add(l.Window).Sub(now), false
	}
	l.counts[class]++
	return 0, true
}

// ShareLimits makes l allow 1/n of each class's limit (at least one
// request per window): this replica's share when n replicas use one API
// key and each counts only its own requests. n <= 1 restores the whole
// limit.
func (l *WindowLimiter) ShareLimits(n int) {
	l.mu.Lock()
	l.share = n
	l.mu.Unlock()
}

// Observe starts a back-off on HTTP 429.
func (l *WindowLimiter) Observe(resp *http.Response, now time.Time) {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		return
	}
	d := RetryAfter(resp, l.Backoff, l.MaxBackoff)
	l.mu.Lock()
	if u := now.Add(d); u.After(l.until) {
		l.until = u
	}
	l.mu.Unlock()
}

// ErrCredentialField reports a credential without a field a venue needs.
var ErrCredentialField = errors.New("credential field missing or empty")

// CredentialFields returns the named fields of c, in order; a missing or
// empty one is an error wrapping ErrCredentialField that names it (never
// its value).
func CredentialFields(c Credential, names ...string) ([]secret.Value, error) {
	out := make([]secret.Value, len(names))
	for i, n := range names {
		v, err := c.Field(n)
		if err != nil || v.IsZero() {
			return nil, fmt.Errorf("%w: %s", ErrCredentialField, n)
		}
		out[i] = v
	}
	return out, nil
}

// Kit is an exchange's declarative description. Embedded in a venue's
// type, it provides Classify (from Routes), CredentialHeaders,
// ClientOrderIDField and NewClientOrderID (from ClientID) and BotToken
// (the kst_ token an unmodified SDK puts where the API key goes, in
// KeyHeader); the venue overrides any of them it must (Coinbase's key is
// in a JWT). The venue adds its signer (Authenticate) and what else is its
// own.
type Kit struct {
	Routes Table
	// KeyHeader is the header the venue's SDKs send the API key in ("":
	// BotToken finds nothing).
	KeyHeader string
	// Credentials are the headers a bot may not send (see
	// Venue.CredentialHeaders).
	Credentials []string
	ClientID    ClientID
}

// Classify implements Venue from Routes.
func (k *Kit) Classify(r *Request) (string, bool) { return k.Routes.Lookup(r.Method, r.Path) }

// CredentialHeaders implements Venue.
func (k *Kit) CredentialHeaders() []string { return append([]string(nil), k.Credentials...) }

// ClientOrderIDField implements Normalizer.
func (k *Kit) ClientOrderIDField() string { return k.ClientID.Field }

// NewClientOrderID implements ClientOrderIDs.
func (k *Kit) NewClientOrderID(seed [16]byte) string { return k.ClientID.New(seed) }

// BotToken implements TokenCarrier: a kst_ token in KeyHeader.
func (k *Kit) BotToken(h http.Header, _ string) (string, bool) {
	if k.KeyHeader == "" {
		return "", false
	}
	t := strings.TrimSpace(h.Get(k.KeyHeader))
	if strings.HasPrefix(t, "kst_") {
		return t, true
	}
	return "", false
}

var _ TokenCarrier = (*Kit)(nil)
