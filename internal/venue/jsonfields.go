package venue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrNotJSONObject: a body that should be one JSON object is not.
var ErrNotJSONObject = errors.New("body is not a single JSON object")

// JSONFields reads body as exactly one JSON object and returns the named
// top-level fields as strings (JSONScalar): a JSON string as is, a number
// in its exact decimal text (never through a float), null or absent as
// "". A field of another type is an error naming it; an object anywhere
// in body with a key twice (see CheckJSONKeys), or a top-level key that is
// one of names in another letter case, is an ErrDuplicateParam. Order
// normalizers use it so that amounts keep the precision the bot sent.
func JSONFields(body []byte, names ...string) ([]string, error) {
	m, err := JSONObject(body, names...)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(names))
	for i, k := range names {
		if out[i], err = JSONScalar(m[k]); err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
	}
	return out, nil
}

// JSONObject reads body as exactly one JSON object and returns its
// members, undecoded. Like JSONFields it refuses a key given twice
// anywhere in body, and a top-level key that is one of names in another
// letter case (ErrDuplicateParam).
func JSONObject(body []byte, names ...string) (map[string]json.RawMessage, error) {
	if err := CheckJSONKeys(body); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, ErrNotJSONObject
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrNotJSONObject)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if err := checkVariants(keys, names); err != nil {
		return nil, err
	}
	return m, nil
}

// errNotScalar reports a JSON value that is neither a string nor a number.
var errNotScalar = errors.New("not a string or number")

// JSONScalar returns a JSON string as is and a number in its exact
// decimal text; null or an absent value (nil) is "".
func JSONScalar(raw json.RawMessage) (string, error) {
	if raw == nil || string(bytes.TrimSpace(raw)) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&n); err != nil {
		return "", errNotScalar
	}
	return n.String(), nil
}

// ErrBatchOrders reports an order placement that carries several orders
// (OKX /api/v5/trade/batch-orders with more than one, Kraken
// AddOrderBatch): keystile checks order placements one order at a time,
// so the gateway refuses it with the rule venue.batch_orders rather than
// let orders through unchecked. A batch of one order is that order.
var ErrBatchOrders = errors.New("venue: a batch of several orders is refused: send the orders one by one")

// MaxBatch bounds the elements JSONArray reads.
const MaxBatch = 100

// JSONArray reads body as exactly one JSON array of at most MaxBatch
// elements and returns each element's raw bytes and its offset in body, so
// that one element can be rewritten in place (SetJSONElement).
func JSONArray(body []byte) (elems []json.RawMessage, offsets []int, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return nil, nil, ErrNotJSONArray
	}
	for dec.More() {
		if len(elems) == MaxBatch {
			return nil, nil, fmt.Errorf("%w: more than %d elements", ErrNotJSONArray, MaxBatch)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, ErrNotJSONArray
		}
		end := int(dec.InputOffset())
		elems = append(elems, raw)
		offsets = append(offsets, end-len(raw))
	}
	if t, err := dec.Token(); err != nil || t != json.Delim(']') {
		return nil, nil, ErrNotJSONArray
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("%w: trailing data", ErrNotJSONArray)
	}
	return elems, offsets, nil
}

// ErrNotJSONArray: a body that should be one JSON array is not.
var ErrNotJSONArray = errors.New("body is not a single JSON array")

// ReplaceJSONElement returns body with the element at offset (as
// JSONArray reported it, old being its bytes) replaced by repl; every
// other byte is kept.
func ReplaceJSONElement(body []byte, offset int, old, repl []byte) ([]byte, error) {
	if offset < 0 || offset+len(old) > len(body) || !bytes.Equal(body[offset:offset+len(old)], old) {
		return nil, ErrNotJSONArray
	}
	out := make([]byte, 0, len(body)-len(old)+len(repl))
	out = append(out, body[:offset]...)
	out = append(out, repl...)
	return append(out, body[offset+len(old):]...), nil
}
