package secret

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
)

// Redacted is what every textual form of a Value prints.
const Redacted = "REDACTED"

// ErrMarshal is returned by every marshalling method of Value.
var ErrMarshal = errors.New("secret: refusing to marshal a secret value")

// Value is a secret byte string. The zero Value is empty and usable.
//
// Copies of a Value share their bytes, so Wipe on one wipes all copies.
// A Value is safe for concurrent reads; Wipe must not race with readers.
type Value struct {
	b []byte
}

// New returns a Value that takes ownership of b: the caller must not use
// b afterwards except through the Value.
func New(b []byte) Value { return Value{b: b} }

// FromString returns a Value holding a copy of s. Prefer New with a byte
// slice that can be wiped: a Go string cannot be.
func FromString(s string) Value { return Value{b: []byte(s)} }

// Clone returns a Value with its own copy of the bytes.
func (v Value) Clone() Value {
	if v.b == nil {
		return Value{}
	}
	c := make([]byte, len(v.b))
	copy(c, v.b)
	return Value{b: c}
}

// Reveal returns the secret bytes themselves (not a copy). Callers must not
// retain, log or modify them.
func (v Value) Reveal() []byte { return v.b }

// Len reports the length of the secret in bytes.
func (v Value) Len() int { return len(v.b) }

// IsZero reports whether the value is empty.
func (v Value) IsZero() bool { return len(v.b) == 0 }

// Equal reports whether v and o hold the same bytes, in time that depends
// only on their lengths.
func (v Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare(v.b, o.b) == 1
}

// EqualBytes is Equal against a plain byte slice.
func (v Value) EqualBytes(b []byte) bool {
	return subtle.ConstantTimeCompare(v.b, b) == 1
}

// Wipe overwrites the bytes with zeros. Best-effort: copies made by the
// runtime or by callers of Reveal are not reached.
func (v Value) Wipe() { Wipe(v.b) }

// Wipe zeroes b in place.
func Wipe(b []byte) {
	clear(b)
}

// String implements fmt.Stringer.
func (Value) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format implements fmt.Formatter so that every verb, including %x, %q and
// %+v, prints Redacted.
func (Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON always fails.
func (Value) MarshalJSON() ([]byte, error) { return nil, ErrMarshal }

// MarshalText always fails.
func (Value) MarshalText() ([]byte, error) { return nil, ErrMarshal }

// MarshalBinary always fails.
func (Value) MarshalBinary() ([]byte, error) { return nil, ErrMarshal }

// GobEncode always fails.
func (Value) GobEncode() ([]byte, error) { return nil, ErrMarshal }

var (
	_ fmt.Stringer   = Value{}
	_ fmt.GoStringer = Value{}
	_ fmt.Formatter  = Value{}
	_ slog.LogValuer = Value{}
)
