package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/token"
)

// Form limits. A form or query longer than these is refused whole.
const (
	maxFormBytes    = 64 << 10
	maxExplainBytes = 1 << 20
	maxField        = 256
	maxListItems    = 32
)

// inputError is a refused form field: its message names the field and
// what is expected, never echoes more than a bounded, quoted value.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }
func (e *inputError) Unwrap() error { return ErrInput }

func badInput(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// shown quotes a value for an error message: bounded, valid UTF-8.
func shown(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.QuoteToASCII(strings.ToValidUTF8(s, "?"))
}

// field is one trimmed single-line value, bounded.
func field(v url.Values, name string, required bool) (string, error) {
	s := strings.TrimSpace(v.Get(name))
	switch {
	case len(s) > maxField:
		return "", badInput("%s: at most %d characters", name, maxField)
	case !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\r\n"):
		return "", badInput("%s: one line of text", name)
	case required && s == "":
		return "", badInput("%s is required", name)
	}
	return s, nil
}

// list splits a field holding items separated by commas, spaces or new
// lines; every item is bounded.
func list(v url.Values, name string) ([]string, error) {
	var out []string
	for _, raw := range v[name] {
		if len(raw) > maxField*maxListItems {
			return nil, badInput("%s: too long", name)
		}
		for item := range strings.FieldsFuncSeq(raw, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
			if len(item) > maxField || !utf8.ValidString(item) || strings.ContainsRune(item, 0) {
				return nil, badInput("%s: item %s is not valid", name, shown(item))
			}
			out = append(out, item)
		}
	}
	if len(out) > maxListItems {
		return nil, badInput("%s: at most %d items", name, maxListItems)
	}
	return out, nil
}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)
	idRE     = regexp.MustCompile(`^tok_[a-z0-9]{4,40}$`)
	policyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	codeRE   = regexp.MustCompile(`^[0-9]{6}$|^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$`)
	opRE     = regexp.MustCompile(`^[a-z0-9_.]{1,64}\*?$`)
)

// parseTTL reads a lifetime: a Go duration or a number of days ("7d").
func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 3650 {
			return 0, badInput("ttl: a duration like 24h, 90m or 7d, got %s", shown(s))
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 3650*24*time.Hour {
		return 0, badInput("ttl: a duration like 24h, 90m or 7d, got %s", shown(s))
	}
	return d, nil
}

// ParseCreateForm reads the token creation form into the admin API's
// request. The admin API (token.Service) validates it fully again; this
// refuses what is malformed early with a message for the form.
func ParseCreateForm(v url.Values) (admin.CreateTokenRequest, error) {
	var req admin.CreateTokenRequest
	var err error
	if req.Name, err = field(v, "name", true); err != nil {
		return req, err
	}
	if !nameRE.MatchString(req.Name) {
		return req, badInput("name: letters, digits, space, '.', '_', '-' (up to 64), got %s", shown(req.Name))
	}
	if req.Venues, err = list(v, "venues"); err != nil {
		return req, err
	}
	if len(req.Venues) == 0 {
		return req, badInput("venues: pick at least one venue")
	}
	for _, x := range req.Venues {
		if !policyRE.MatchString(x) {
			return req, badInput("venues: %s is not a venue id", shown(x))
		}
	}
	if req.Scopes, err = list(v, "scopes"); err != nil {
		return req, err
	}
	for _, s := range req.Scopes {
		if err := token.ValidateScope(s); err != nil {
			return req, badInput("scopes: %s is not a scope (e.g. market.read, order.*)", shown(s))
		}
	}
	if req.Policy, err = field(v, "policy", false); err != nil {
		return req, err
	}
	if req.Policy != "" && !policyRE.MatchString(req.Policy) {
		return req, badInput("policy: %s is not a policy name", shown(req.Policy))
	}
	if req.CIDRs, err = list(v, "cidrs"); err != nil {
		return req, err
	}
	for _, c := range req.CIDRs {
		if _, err := admin.ParseCIDR(c); err != nil {
			return req, badInput("source addresses: %s is not an address or CIDR prefix", shown(c))
		}
	}
	ttl, err := field(v, "ttl", false)
	if err != nil {
		return req, err
	}
	if req.TTL, err = parseTTL(ttl); err != nil {
		return req, err
	}
	switch v.Get("test") {
	case "", "0", "false", "off":
	case "1", "true", "on":
		req.Test = true
	default:
		return req, badInput("test: on or off")
	}
	return req, nil
}

// parseTokenID reads a token id from a path.
func parseTokenID(s string) (string, error) {
	if !idRE.MatchString(s) {
		return "", badInput("not a token id: %s", shown(s))
	}
	return s, nil
}

// parseCode reads an optional TOTP or recovery code field ("" if none).
func parseCode(v url.Values) (string, error) {
	c := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v.Get("totp")), " ", ""))
	if c == "" {
		return "", nil
	}
	if !codeRE.MatchString(c) {
		return "", badInput("second factor: 6 digits, or a recovery code xxxx-xxxx-xxxx")
	}
	return c, nil
}

// AuditQuery selects audit records (the audit page's search).
type AuditQuery struct {
	// Token is a token's public id (records hold its HMAC).
	Token string
	Venue string
	// Decision is allow, deny, error or "".
	Decision string
	// Operation is an exact operation or a prefix ending in '*'
	// ("admin.*").
	Operation string
	// Since and Until bound the record time (zero: open).
	Since, Until time.Time
	// Limit bounds the records returned (newest first).
	Limit int
}

// Defaults of AuditQuery.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// Matches reports whether rec passes every filter but Token (which needs
// the log's key: the caller compares rec.Token with the token's HMAC).
func (q AuditQuery) Matches(rec audit.Record) bool {
	if rec.Hash == "" {
		return false
	}
	if q.Venue != "" && rec.Venue != q.Venue || q.Decision != "" && rec.Decision != q.Decision {
		return false
	}
	if op, ok := strings.CutSuffix(q.Operation, "*"); ok {
		if !strings.HasPrefix(rec.Operation, op) {
			return false
		}
	} else if q.Operation != "" && rec.Operation != q.Operation {
		return false
	}
	if !q.Since.IsZero() && rec.Time.Before(q.Since) || !q.Until.IsZero() && !rec.Time.Before(q.Until) {
		return false
	}
	return true
}

// ParseAuditQuery reads the audit search's query parameters: token (a
// public id, never a token), venue, decision, op, since and until (a
// duration back from now — 90m, 24h, 7d — or RFC 3339, or the
// datetime-local form 2006-01-02T15:04 in UTC), limit.
func ParseAuditQuery(v url.Values, now time.Time) (AuditQuery, error) {
	q := AuditQuery{Limit: DefaultAuditLimit}
	var err error
	if q.Token, err = field(v, "token", false); err != nil {
		return q, err
	}
	if strings.HasPrefix(q.Token, "kst_") {
		return AuditQuery{}, badInput("token: give the token's public id (tok_...), never the token itself")
	}
	if q.Token != "" && !idRE.MatchString(q.Token) {
		return q, badInput("token: a public id like tok_ab12cd34, got %s", shown(q.Token))
	}
	if q.Venue, err = field(v, "venue", false); err != nil {
		return q, err
	}
	if q.Venue != "" && !policyRE.MatchString(q.Venue) {
		return q, badInput("venue: %s is not a venue id", shown(q.Venue))
	}
	if q.Decision, err = field(v, "decision", false); err != nil {
		return q, err
	}
	switch q.Decision {
	case "", audit.Allow, audit.Deny, audit.Error:
	default:
		return q, badInput("decision: allow, deny or error")
	}
	if q.Operation, err = field(v, "op", false); err != nil {
		return q, err
	}
	if q.Operation != "" && !opRE.MatchString(q.Operation) {
		return q, badInput("operation: like order.place or admin.*, got %s", shown(q.Operation))
	}
	for _, b := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		s, err := field(v, b.name, false)
		if err != nil {
			return q, err
		}
		if *b.to, err = parseWhen(s, now); err != nil {
			return q, badInput("%s: %v", b.name, err)
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, badInput("since must be before until")
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxAuditLimit {
			return q, badInput("limit: 1 to %d", MaxAuditLimit)
		}
		q.Limit = n
	}
	return q, nil
}

var errWhen = errors.New("a duration back from now (90m, 24h, 7d) or a time (2026-01-02T15:04:05Z)")

func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 && n <= 3650 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
		return time.Time{}, errWhen
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 || d > 3650*24*time.Hour {
			return time.Time{}, errWhen
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			if t.Year() < 2000 || t.Year() > 9999 {
				return time.Time{}, errWhen
			}
			return t, nil
		}
	}
	return time.Time{}, errWhen
}

// Encode is the query string that selects q again (for links).
func (q AuditQuery) Encode() string {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("token", q.Token)
	set("venue", q.Venue)
	set("decision", q.Decision)
	set("op", q.Operation)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit != 0 && q.Limit != DefaultAuditLimit {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v.Encode()
}

// ParseExplainForm reads the policy page's sample request: the token, a
// method, a gateway path "/<venue>/<path>" with an optional query, a
// content type and body, and a reference price.
func ParseExplainForm(v url.Values) (ExplainRequest, error) {
	var r ExplainRequest
	var err error
	if r.Token, err = field(v, "token", true); err != nil {
		return r, err
	}
	if _, err := parseTokenID(r.Token); err != nil {
		return r, badInput("token: pick a token")
	}
	r.Method = strings.ToUpper(strings.TrimSpace(v.Get("method")))
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
	default:
		return r, badInput("method: GET, POST, PUT, DELETE or PATCH")
	}
	target, err := field(v, "path", true)
	if err != nil {
		return r, err
	}
	if !strings.HasPrefix(target, "/") {
		return r, badInput("path: the gateway path, /<venue>/<path>, e.g. /binance/api/v3/order")
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Host != "" || u.Fragment != "" {
		return r, badInput("path: the gateway path, /<venue>/<path>, e.g. /binance/api/v3/order")
	}
	p := u.EscapedPath()
	venueID, rest, _ := strings.Cut(p[1:], "/")
	if !policyRE.MatchString(venueID) {
		return r, badInput("path: %s does not start with a venue id", shown(p))
	}
	for seg := range strings.SplitSeq(rest, "/") {
		if seg == "." || seg == ".." {
			return r, badInput("path: dot segments are refused by the gateway too")
		}
	}
	r.Venue, r.Path, r.Query = venueID, "/"+rest, u.RawQuery
	if q := v.Get("query"); q != "" {
		if len(q) > maxField*16 {
			return r, badInput("query: too long")
		}
		if _, err := url.ParseQuery(q); err != nil {
			return r, badInput("query: not a query string (a=1&b=2)")
		}
		if r.Query != "" {
			r.Query += "&"
		}
		r.Query += strings.TrimPrefix(q, "?")
	}
	r.Header = http.Header{}
	switch ct := v.Get("content_type"); ct {
	case "":
	case "application/json", "application/x-www-form-urlencoded":
		r.Header.Set("Content-Type", ct)
	default:
		return r, badInput("content type: none, application/json or application/x-www-form-urlencoded")
	}
	if b := v.Get("body"); b != "" {
		if len(b) > maxExplainBytes {
			return r, badInput("body: at most %d bytes", maxExplainBytes)
		}
		r.Body = []byte(strings.ReplaceAll(b, "\r\n", "\n"))
	}
	if r.RefPrice, err = field(v, "ref_price", false); err != nil {
		return r, err
	}
	if r.RefPrice != "" {
		f, err := strconv.ParseFloat(r.RefPrice, 64)
		if err != nil || f <= 0 || strings.ContainsAny(r.RefPrice, "eEnNiIxX_+") {
			return r, badInput("reference price: a positive decimal like 30000.5")
		}
	}
	return r, nil
}
