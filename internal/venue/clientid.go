package venue

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ClientOrderIDs is implemented by venues whose order placements carry a
// client order id. keystile uses it to give every order placement an id
// the venue dedupes and can be asked about, so that a request whose outcome
// is unknown is looked up instead of being sent twice.
type ClientOrderIDs interface {
	// NewClientOrderID formats 16 bytes of seed as an id valid for the
	// venue's client-order-id field (charset and length). The same seed
	// always gives the same id.
	NewClientOrderID(seed [16]byte) string
	// SetClientOrderID sets the client-order-id field of an order.place
	// request to id, rewriting r.Body and/or r.RawQuery in place (same
	// encoding, other fields unchanged byte for byte, every other copy of
	// the field removed), so that Normalize reads id back. It fails wrapping
	// ErrNoClientOrderID for a request that takes none (another endpoint, a
	// field the venue declares exclusive with it).
	SetClientOrderID(r *Request, id string) error
}

// OrderLookup is implemented by venues that can look an order up by its
// client order id.
type OrderLookup interface {
	// LookupRequests returns the order.read requests that find the order
	// r placed (o is r's normalized order) under clientOrderID, in the order
	// to send them. Most venues need one; a venue that keeps open and
	// closed orders behind different endpoints needs more (Kraken:
	// OpenOrders, then ClosedOrders). The requests carry no credentials:
	// they are signed like any other.
	LookupRequests(r *Request, o *Order, clientOrderID string) ([]*Request, error)
	// Found interprets the answer to one of those requests: found=true with
	// the venue's order id when it holds the order with clientOrderID;
	// found=false when it says definitively that the order is not among
	// those it covers; an error (wrapping ErrLookupUndecided for a well-formed
	// answer that cannot tell) otherwise. The order does not exist only when
	// every request's answer says found=false: see LookupOutcome.
	Found(clientOrderID string, status int, body []byte) (venueOrderID string, found bool, err error)
}

// OrderIDReader is implemented by venues whose order placement answers name
// the order: VenueOrderID extracts the venue's order id from a successful
// order.place answer ("" if there is none or the answer is a refusal).
type OrderIDReader interface {
	VenueOrderID(status int, body []byte) string
}

// Errors of client order ids and lookups.
var (
	// ErrNoClientOrderID reports a request keystile cannot give a client
	// order id.
	ErrNoClientOrderID = errors.New("venue: request takes no client order id")
	// ErrLookupUndecided reports a lookup answer that does not tell whether
	// the order exists (an error answer, a page that is not the last).
	ErrLookupUndecided = errors.New("venue: lookup answer does not tell whether the order exists")
)

// LookupOutcome combines the Found results of a lookup's requests, in
// order: the first found wins; the order is absent only if every answer
// said found=false; otherwise the first error is returned.
func LookupOutcome(results []LookupResult) (venueOrderID string, found bool, err error) {
	if len(results) == 0 {
		return "", false, ErrLookupUndecided
	}
	for _, r := range results {
		if r.Err == nil && r.Found {
			return r.VenueOrderID, true, nil
		}
	}
	for _, r := range results {
		if r.Err != nil {
			return "", false, r.Err
		}
	}
	return "", false, nil
}

// LookupResult is one request's Found result.
type LookupResult struct {
	VenueOrderID string
	Found        bool
	Err          error
}

// HexID formats seed as 32 lowercase hex digits: valid for Binance
// (newClientOrderId), OKX (clOrdId) and Bybit (orderLinkId).
func HexID(seed [16]byte) string { return hex.EncodeToString(seed[:]) }

// UUID formats seed as an RFC 9562 version 4 UUID (the version and variant
// bits of seed are overwritten), e.g. for Kraken's cl_ord_id and Coinbase's
// client_order_id.
func UUID(seed [16]byte) string {
	seed[6] = seed[6]&0x0f | 0x40
	seed[8] = seed[8]&0x3f | 0x80
	h := hex.EncodeToString(seed[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// SetFormParam returns raw (a query string or form body) with the first
// pair whose unescaped name is name given value (query-escaped) and every
// other such pair removed. Other pairs keep their bytes and order. ok is
// false, and raw is returned unchanged, if no pair has that name.
func SetFormParam(raw, name, value string) (out string, ok bool) {
	var b strings.Builder
	b.Grow(len(raw) + len(value))
	first := true
	for p := range strings.SplitSeq(raw, "&") {
		if p == "" {
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); k == name || err == nil && uk == name {
			if ok {
				continue
			}
			ok = true
			p = url.QueryEscape(name) + "=" + url.QueryEscape(value)
		}
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(p)
	}
	if !ok {
		return raw, false
	}
	return b.String(), true
}

// DropFormParam returns raw without the pairs whose unescaped name is name;
// other pairs keep their bytes and order.
func DropFormParam(raw, name string) string {
	var b strings.Builder
	changed := false
	for p := range strings.SplitSeq(raw, "&") {
		if p == "" {
			changed = true
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); k == name || err == nil && uk == name {
			changed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p)
	}
	if !changed {
		return raw
	}
	return b.String()
}

// HasFormParam reports whether raw has a pair whose unescaped name is name.
func HasFormParam(raw, name string) bool {
	for p := range strings.SplitSeq(raw, "&") {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); p != "" && (k == name || err == nil && uk == name) {
			return true
		}
	}
	return false
}

// AppendFormParam returns raw with name=value (both query-escaped) added
// as the last pair.
func AppendFormParam(raw, name, value string) string {
	p := url.QueryEscape(name) + "=" + url.QueryEscape(value)
	if raw == "" || strings.HasSuffix(raw, "&") {
		return raw + p
	}
	return raw + "&" + p
}

// SetJSONMember returns body, which must be exactly one JSON object, with
// every top-level member whose (unescaped) name matches given the JSON
// string value, or with name:value appended as the last member if none
// matches. Everything else keeps its bytes. match is how the venue's own
// parser compares names (exact for a map, case-insensitive for a struct).
func SetJSONMember(body []byte, name, value string, match func(string) bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, ErrNotJSONObject
	}
	type span struct{ from, to int }
	var spans []span
	lastEnd := int(dec.InputOffset()) // just after '{'
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, ErrNotJSONObject
		}
		k, ok := t.(string)
		if !ok {
			return nil, ErrNotJSONObject
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, ErrNotJSONObject
		}
		end := int(dec.InputOffset())
		if match(k) {
			spans = append(spans, span{end - len(raw), end})
		}
		lastEnd = end
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, ErrNotJSONObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrNotJSONObject)
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(body)+len(name)+len(v)+4)
	if len(spans) == 0 {
		n, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		out = append(out, body[:lastEnd]...)
		if body[lastEnd-1] != '{' {
			out = append(out, ',')
		}
		out = append(out, n...)
		out = append(out, ':')
		out = append(out, v...)
		return append(out, body[lastEnd:]...), nil
	}
	at := 0
	for _, s := range spans {
		out = append(out, body[at:s.from]...)
		out = append(out, v...)
		at = s.to
	}
	return append(out, body[at:]...), nil
}

// NewHTTPRequest builds the outbound request of r (a lookup, say) below
// baseURL (the venue's API root, without a trailing slash): body, headers
// and GetBody set, no credentials.
func NewHTTPRequest(ctx context.Context, baseURL string, r *Request) (*http.Request, error) {
	target := strings.TrimRight(baseURL, "/") + r.Path
	if r.RawQuery != "" {
		target += "?" + r.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, bytes.NewReader(r.Body))
	if err != nil {
		return nil, fmt.Errorf("venue: lookup request: %w", err)
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if len(r.Body) == 0 {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	return req, nil
}
