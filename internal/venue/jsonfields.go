package venue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
