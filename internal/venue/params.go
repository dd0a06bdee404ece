package venue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrDuplicateParam marks an order request that names a parameter twice:
// symbol=A&symbol=B, a key in both the query and the form body, a JSON
// object with the same key twice, or a field keystile reads spelt in
// another letter case. Venues differ in which copy they read (the first,
// the last, either case, or an error), so keystile could check one order
// and the venue execute another: the gateway refuses such a request
// whatever the policy.
var ErrDuplicateParam = errors.New("a parameter is given twice")

// maxJSONDepth bounds the nesting CheckJSONKeys walks.
const maxJSONDepth = 64

// FormParams reads an order's parameters from its raw query and its form
// body as one set. A key given twice, within either or across both, is an
// ErrDuplicateParam; keys are compared after percent-decoding and
// ignoring ASCII case (Symbol=B next to symbol=A is refused too). owned
// reports keys the venue adapter removes and replaces before signing
// (timestamps, signatures, nonces); they are neither read nor counted.
func FormParams(rawQuery string, body []byte, owned func(key string) bool) (url.Values, error) {
	out := url.Values{}
	seen := map[string]string{}
	for _, part := range []struct {
		name, raw string
	}{{"query", rawQuery}, {"body", string(body)}} {
		vals, err := url.ParseQuery(part.raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part.name, err)
		}
		for k, vs := range vals {
			if owned != nil && owned(k) {
				continue
			}
			fold := strings.ToLower(k)
			if prev, dup := seen[fold]; dup || len(vs) > 1 {
				where := part.name
				if dup && prev != part.name {
					where = prev + " and " + part.name
				}
				return nil, fmt.Errorf("%w: %q in the %s", ErrDuplicateParam, k, where)
			}
			seen[fold] = part.name
			out[k] = vs
		}
	}
	return out, nil
}

// FormFields reads the named fields of an order from its raw query and
// form body (FormParams: a duplicate is an ErrDuplicateParam), "" for an
// absent one. A key that matches a name only when ASCII case is ignored
// (Price for price) is an ErrDuplicateParam too: keystile would read the
// field as absent while a lenient venue reads it.
func FormFields(rawQuery string, body []byte, owned func(key string) bool, names ...string) ([]string, error) {
	vals, err := FormParams(rawQuery, body, owned)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	if err := checkVariants(keys, names); err != nil {
		return nil, err
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = vals.Get(n)
	}
	return out, nil
}

// checkVariants reports an ErrDuplicateParam for a key that equals one of
// names only when ASCII case is ignored.
func checkVariants(keys, names []string) error {
	for _, k := range keys {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return fmt.Errorf("%w: %q for %q", ErrDuplicateParam, k, n)
			}
		}
	}
	return nil
}

// CheckJSONKeys reports an ErrDuplicateParam when some object of the JSON
// document body holds the same key twice, compared after unescaping and
// ignoring ASCII case ({"side":"buy","Side":"sell"} and
// {"side":"buy","\u0073ide":"sell"} are both refused), at any depth. A
// body that is not valid UTF-8 is refused as well: decoders replace
// invalid bytes differently, so two distinct keys could become one. A
// body that is not JSON at all is not this function's concern (nil).
func CheckJSONKeys(body []byte) error {
	if !json.Valid(body) {
		return nil
	}
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: the JSON body is not valid UTF-8", ErrDuplicateParam)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return walkJSON(dec, 0)
}

// walkJSON reads one JSON value from dec, checking the keys of every
// object in it.
func walkJSON(dec *json.Decoder, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%w: JSON nested deeper than %d", ErrDuplicateParam, maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := kt.(string)
			fold := strings.ToLower(k)
			if seen[fold] {
				return fmt.Errorf("%w: JSON key %q", ErrDuplicateParam, k)
			}
			seen[fold] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}
