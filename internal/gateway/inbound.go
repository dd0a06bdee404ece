package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/venue"
)

// maxPathDecodes is how many rounds of percent-decoding a path is checked
// through: a proxy or framework in front of the venue may decode twice
// (%252e%252e is %2e%2e is ..), so each round must be clean.
const maxPathDecodes = 3

// pathLookalikes are characters some servers fold (Unicode
// normalisation, "best fit" code pages) into '.', '/' or '\': one dot
// leader, small and fullwidth full stops; fraction, division, big and
// fullwidth slashes; small and fullwidth reverse solidus, set minus.
const pathLookalikes = "\u2024\uFE52\uFF0E\u2044\u2215\u29F8\uFF0F\uFE68\uFF3C\u2216"

// cleanPath reports whether an escaped request path is one no server
// between keystile and the venue can read as a different path: no
// encoded separator (%2F, %5C) or NUL, no backslash, no empty segment
// ("//"), and no dot segment — ".", "..", but also "..;param" (a path
// parameter, which Java servers drop), "...", ". ." and runs of dots
// padded with spaces (which Windows servers trim), in any of the first
// maxPathDecodes percent-decodings (so %2e%2e and %252e%252e count),
// nor bytes that are not UTF-8 (overlong encodings such as %c0%ae are
// dots to lax decoders) or characters that fold into dots and slashes.
func cleanPath(escaped string) bool {
	if strings.Contains(escaped, "//") {
		return false
	}
	if plainPath(escaped) {
		return true
	}
	cur := escaped
	for round := 0; round < maxPathDecodes; round++ {
		if hasEscape(cur, "2f") || hasEscape(cur, "5c") || hasEscape(cur, "00") {
			return false
		}
		dec, err := url.PathUnescape(cur)
		if err != nil {
			// The request path itself must be well-formed; a later round
			// that holds a literal '%' (from %25) just cannot decode
			// further.
			return round > 0
		}
		if strings.ContainsRune(dec, '\\') || !ascii(dec) && (!utf8.ValidString(dec) || strings.ContainsAny(dec, pathLookalikes)) {
			return false
		}
		for seg := range strings.SplitSeq(dec, "/") {
			if dotSegment(seg) {
				return false
			}
		}
		if dec == cur {
			return true
		}
		cur = dec
	}
	return true
}

// plainPath reports a path of unreserved characters and '/' only, with no
// '.' next to a '/' or an end: nothing in it decodes or can be a dot
// segment (the common case, checked without allocating).
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '/', c == '-', c == '_', c == '~':
		case c == '.':
			if i == 0 || p[i-1] == '/' || i == len(p)-1 || p[i+1] == '/' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ascii reports whether s is all ASCII.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hasEscape reports whether s holds "%" followed by hex (two lower-case
// hex digits), in either letter case (lower is scrub.go's ASCII fold).
func hasEscape(s, hex string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0 && i+2 < len(s); {
		if lower(s[i+1]) == hex[0] && lower(s[i+2]) == hex[1] {
			return true
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// dotSegment reports a path segment some server may resolve as "." or
// "..": only dots (and spaces), before any ";parameters"; or a segment
// that is nothing but parameters (";x", an empty segment to Java servers).
func dotSegment(seg string) bool {
	name, _, params := strings.Cut(seg, ";")
	if params && name == "" {
		return true
	}
	return strings.Contains(name, ".") && strings.Trim(name, ". \t") == ""
}

// routingHeaders are request headers that ask a server or a proxy in
// front of the venue to route, rewrite or re-identify the request:
// keystile classified and signed the request line it forwards, so none
// of them may reach the venue. Upgrade (with Connection) would turn the
// request into a tunnel past keystile's answer checks.
var routingHeaders = []string{
	"Upgrade", "Connection", "Http2-Settings", "Proxy-Connection", "Te", "Keep-Alive",
	"X-Original-Url", "X-Rewrite-Url", "X-Override-Url", "X-Http-Destinationurl", "Destination",
	"X-Host", "X-Http-Host-Override", "X-Forwarded-Server", "Front-End-Https", "X-Url-Scheme",
	"Via", "Max-Forwards", "X-Proxy-Url", "X-Middleware-Subrequest",
	"True-Client-Ip", "X-Client-Ip", "Client-Ip", "X-Cluster-Client-Ip", "X-Originating-Ip",
	"X-Remote-Ip", "X-Remote-Addr", "X-Real-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
}

// routingPrefixes are header-name prefixes with the same role (canonical
// form): X-Forwarded-Port, -Prefix, -Uri, -Scheme...; X-Original-Host,
// -Uri, -Method; X-Envoy-Original-Path.
var routingPrefixes = []string{"X-Forwarded-", "X-Original-", "X-Rewrite-", "X-Override-", "X-Envoy-"}

// stripRouting removes routingHeaders and headers with routingPrefixes.
func stripRouting(h http.Header) {
	for k := range h {
		for _, p := range routingPrefixes {
			if strings.HasPrefix(k, p) {
				delete(h, k)
				break
			}
		}
	}
	for _, k := range routingHeaders {
		delete(h, k)
	}
}

// stripQueryTokens removes from a raw query every pair whose key or value
// holds a kst_ token (or anything starting like one, in any letter case,
// percent-encoded or not): a token must never reach a venue, and the query
// is signed and forwarded byte for byte. Other pairs keep their order and
// their exact bytes. It returns raw itself when nothing is removed.
func stripQueryTokens(raw string) string {
	if raw == "" || !strings.Contains(raw, "%") && !containsKst(raw) {
		return raw
	}
	found := false
	for pair := range strings.SplitSeq(raw, "&") {
		if found = holdsToken(pair); found {
			break
		}
	}
	if !found {
		return raw
	}
	var b strings.Builder
	for pair := range strings.SplitSeq(raw, "&") {
		if holdsToken(pair) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	return b.String()
}

// holdsToken reports whether a query pair, decoded up to maxPathDecodes
// times, contains "kst_" in any letter case.
func holdsToken(pair string) bool {
	cur := pair
	for range maxPathDecodes {
		if containsKst(cur) {
			return true
		}
		if !strings.ContainsAny(cur, "%+") {
			return false
		}
		dec, err := url.QueryUnescape(cur)
		if err != nil || dec == cur {
			return false
		}
		cur = dec
	}
	return containsKst(cur)
}

// containsKst reports whether s contains "kst_", ignoring ASCII case,
// without allocating.
func containsKst(s string) bool {
	for i := 0; i+3 < len(s); i++ {
		if lower(s[i]) == 'k' && lower(s[i+1]) == 's' && lower(s[i+2]) == 't' && s[i+3] == '_' {
			return true
		}
	}
	return false
}

// errDuplicateParam is the public answer to an order that names a
// parameter twice.
var errDuplicateParam = publicError{http.StatusBadRequest, "bad_request", "a request parameter is given more than once"}

// orderRefusal decides whether an order placement whose normalizer
// failed with oerr is refused before the policy: always when it names a
// parameter twice (keystile and the venue could read different orders) or
// places several orders at once (venue.ErrBatchOrders: keystile checks
// orders one by one), and any malformed order when no policy is
// configured.
func orderRefusal(oerr error, havePolicy bool) (publicError, string, bool) {
	switch {
	case oerr == nil:
		return publicError{}, "", false
	case errors.Is(oerr, venue.ErrDuplicateParam):
		return errDuplicateParam, "venue.duplicate_parameter", true
	case errors.Is(oerr, venue.ErrBatchOrders):
		return errDenied, "venue.batch_orders", true
	case !havePolicy:
		return errBadRequest, "venue.order", true
	}
	return publicError{}, "", false
}
