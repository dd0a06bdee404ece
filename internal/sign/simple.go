package sign

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/secret"
)

// Sentinel errors callers may branch on.
var (
	// ErrEmptyKey reports that required key material was empty.
	ErrEmptyKey = errors.New("sign: empty key material")
	// ErrInvalidHeaderName reports a header or parameter name that is not an
	// HTTP token.
	ErrInvalidHeaderName = errors.New("sign: invalid header name")
	// ErrInvalidValue reports a credential or value containing bytes that
	// cannot appear in an HTTP header (CR, LF, NUL or other controls). The
	// offending value is never included.
	ErrInvalidValue = errors.New("sign: value contains forbidden bytes")
	// ErrNilRequest reports a nil request or a request without URL.
	ErrNilRequest = errors.New("sign: nil request or url")
)

// HeaderKey sets header to the key, replacing any value the bot supplied.
func HeaderKey(r *http.Request, header string, key secret.Value) error {
	if r == nil {
		return ErrNilRequest
	}
	if !validToken(header) {
		return fmt.Errorf("%w: header key %q", ErrInvalidHeaderName, header)
	}
	if key.IsZero() {
		return fmt.Errorf("%w: header key %s", ErrEmptyKey, header)
	}
	if !validHeaderValue(key.Reveal()) {
		return fmt.Errorf("%w: header key %s", ErrInvalidValue, header)
	}
	r.Header.Set(header, string(key.Reveal()))
	return nil
}

// Bearer sets "Authorization: Bearer <token>" (RFC 6750), replacing any
// Authorization header the bot supplied (such as its own keystile token).
func Bearer(r *http.Request, token secret.Value) error {
	if r == nil {
		return ErrNilRequest
	}
	if token.IsZero() {
		return fmt.Errorf("%w: bearer", ErrEmptyKey)
	}
	for _, c := range token.Reveal() {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: bearer", ErrInvalidValue)
		}
	}
	r.Header.Set("Authorization", "Bearer "+string(token.Reveal()))
	return nil
}

// Basic sets "Authorization: Basic base64(user ":" pass)" as defined by
// RFC 7617. The user-id must not contain a colon; neither part may contain
// control characters. Callers implementing OAuth 2.0 client authentication
// (RFC 6749 section 2.3.1) form-encode client id and secret before calling.
func Basic(r *http.Request, user, pass secret.Value) error {
	if r == nil {
		return ErrNilRequest
	}
	if user.IsZero() {
		return fmt.Errorf("%w: basic: user", ErrEmptyKey)
	}
	if strings.ContainsRune(string(user.Reveal()), ':') {
		return fmt.Errorf("%w: basic: user contains a colon", ErrInvalidValue)
	}
	if hasCTL(user.Reveal()) || hasCTL(pass.Reveal()) {
		return fmt.Errorf("%w: basic", ErrInvalidValue)
	}
	u, p := user.Reveal(), pass.Reveal()
	buf := make([]byte, 0, len(u)+1+len(p))
	buf = append(buf, u...)
	buf = append(buf, ':')
	buf = append(buf, p...)
	enc := base64.StdEncoding.EncodeToString(buf)
	secret.Wipe(buf)
	r.Header.Set("Authorization", "Basic "+enc)
	return nil
}

// QueryKey sets the query parameter param to key, replacing the first
// occurrence and dropping any further ones, and keeping every other parameter
// byte for byte in its original order; if absent it is appended last.
// Keys in URLs end up in access logs: prefer a header where the venue allows.
func QueryKey(r *http.Request, param string, key secret.Value) error {
	if r == nil || r.URL == nil {
		return ErrNilRequest
	}
	if param == "" || !validToken(param) {
		return fmt.Errorf("%w: query key %q", ErrInvalidHeaderName, param)
	}
	if key.IsZero() {
		return fmt.Errorf("%w: query key %s", ErrEmptyKey, param)
	}
	r.URL.RawQuery = setQueryParam(r.URL.RawQuery, param, url.QueryEscape(string(key.Reveal())))
	r.URL.ForceQuery = false
	return nil
}

// setQueryParam replaces (first occurrence) or appends name=escapedValue in
// raw, removing later occurrences; other pairs are kept verbatim in order.
func setQueryParam(raw, name, escapedValue string) string {
	pair := url.QueryEscape(name) + "=" + escapedValue
	parts := splitQuery(raw)
	out := make([]string, 0, len(parts)+1)
	done := false
	for _, p := range parts {
		if queryKey(p) == name {
			if !done {
				out = append(out, pair)
				done = true
			}
			continue
		}
		out = append(out, p)
	}
	if !done {
		out = append(out, pair)
	}
	return strings.Join(out, "&")
}

// removeQueryParam drops every occurrence of name from raw.
func removeQueryParam(raw, name string) string {
	parts := splitQuery(raw)
	out := parts[:0]
	for _, p := range parts {
		if queryKey(p) != name {
			out = append(out, p)
		}
	}
	return strings.Join(out, "&")
}

func splitQuery(raw string) []string {
	if raw == "" {
		return nil
	}
	return strings.Split(raw, "&")
}

// queryKey returns the decoded key of one raw "k=v" pair; undecodable keys
// are compared verbatim.
func queryKey(pair string) string {
	k, _, _ := strings.Cut(pair, "=")
	if d, err := url.QueryUnescape(k); err == nil {
		return d
	}
	return k
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether b is a field value without controls
// other than horizontal tab.
func validHeaderValue(b []byte) bool { return !hasCTL(b) }

// HasControl reports whether b holds a control character other than
// horizontal tab (CR, LF, NUL, DEL, ...): such a value must never go into
// a header, where it could inject another one.
func HasControl(b []byte) bool { return hasCTL(b) }

func hasCTL(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}
