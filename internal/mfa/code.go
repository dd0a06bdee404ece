package mfa

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/keystile/keystile/internal/secret"
)

// Kind tells a TOTP code from a recovery code.
type Kind int

// Kinds of Code.
const (
	KindTOTP Kind = iota + 1
	KindRecovery
)

// Shapes of the codes.
const (
	// TOTPDigits is the length of a TOTP code.
	TOTPDigits = 6
	// RecoveryLength is the number of characters of a recovery code
	// (5 bits each: 60 bits), shown in groups of RecoveryGroup.
	RecoveryLength = 12
	RecoveryGroup  = 4
	// recoveryAlphabet is Crockford's base32 in lower case: no i, l, o, u.
	recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	// maxCodeInput bounds what ParseCode looks at.
	maxCodeInput = 64
)

// ErrMalformedCode is returned by ParseCode for input that is neither a
// TOTP code nor a recovery code.
var ErrMalformedCode = errors.New("mfa: malformed code: want 6 digits or a recovery code (xxxx-xxxx-xxxx)")

// Code is a second-factor input as a person typed it, normalised. It
// redacts itself in logs and formatted output.
type Code struct {
	kind Kind
	v    string // 6 digits, or 12 recovery characters without separators
}

// Kind is KindTOTP or KindRecovery (0 for the zero Code).
func (c Code) Kind() Kind { return c.kind }

// IsZero reports whether c holds no code.
func (c Code) IsZero() bool { return c.kind == 0 }

// String implements fmt.Stringer without revealing the code.
func (c Code) String() string { return "REDACTED" }

// GoString implements fmt.GoStringer without revealing the code.
func (c Code) GoString() string { return "mfa.Code(REDACTED)" }

// LogValue implements slog.LogValuer without revealing the code.
func (c Code) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalJSON refuses: a code never travels inside a JSON document keystile
// builds.
func (c Code) MarshalJSON() ([]byte, error) {
	return nil, errors.New("mfa: refusing to marshal a code")
}

// ParseCode normalises what a person typed. Spaces, tabs and dashes are
// ignored. Six digits are a TOTP code. Twelve characters of the recovery
// alphabet are a recovery code, case-insensitively, with the look-alikes
// i and l read as 1 and o as 0. Anything else is ErrMalformedCode.
func ParseCode(s string) (Code, error) {
	if len(s) > maxCodeInput {
		return Code{}, ErrMalformedCode
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '-':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		switch c {
		case 'i', 'l':
			c = '1'
		case 'o':
			c = '0'
		}
		if strings.IndexByte(recoveryAlphabet, c) < 0 {
			return Code{}, ErrMalformedCode
		}
		b.WriteByte(c)
	}
	v := b.String()
	switch {
	case len(v) == TOTPDigits && onlyDigits(s):
		return Code{kind: KindTOTP, v: v}, nil
	case len(v) == RecoveryLength:
		return Code{kind: KindRecovery, v: v}, nil
	}
	return Code{}, ErrMalformedCode
}

// onlyDigits reports whether s holds digits and separators only: a TOTP
// code typed with a look-alike letter ("12345o") is not a TOTP code.
func onlyDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != ' ' && c != '\t' && c != '-' {
			return false
		}
	}
	return true
}

// FormatRecoveryCode renders a recovery code in groups (xxxx-xxxx-xxxx).
// It returns "" for a Code that is not a recovery code.
func FormatRecoveryCode(c Code) string {
	if c.kind != KindRecovery {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(c.v); i += RecoveryGroup {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(c.v[i:min(i+RecoveryGroup, len(c.v))])
	}
	return b.String()
}

// Reveal returns the normalised code. Only the code's holder (the CLI
// sending it, a test) calls it.
func (c Code) Reveal() string { return c.v }

// NewRecoveryCodes returns n distinct random recovery codes, formatted
// (xxxx-xxxx-xxxx). If r is nil, crypto/rand.
func NewRecoveryCodes(r io.Reader, n int) ([]string, error) {
	if r == nil {
		r = rand.Reader
	}
	if n < 1 || n > MaxRecoveryCodes {
		return nil, fmt.Errorf("mfa: recovery codes: want 1 to %d, got %d", MaxRecoveryCodes, n)
	}
	seen := map[string]bool{}
	out := make([]string, 0, n)
	buf := make([]byte, RecoveryLength)
	defer clear(buf)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("mfa: recovery codes: %w", err)
		}
		v := make([]byte, RecoveryLength)
		for i, x := range buf {
			v[i] = recoveryAlphabet[x&31] // 256 is a multiple of 32: unbiased
		}
		c := Code{kind: KindRecovery, v: string(v)}
		if seen[c.v] {
			continue
		}
		seen[c.v] = true
		out = append(out, FormatRecoveryCode(c))
	}
	return out, nil
}

// SecretBytes is the size of a new TOTP secret: 160 bits, the length
// RFC 4226 recommends for HMAC-SHA1.
const SecretBytes = 20

// b32 is the TOTP secret's text form: RFC 4648 base32 without padding, as
// authenticator apps expect it.
func b32() *base32.Encoding { return base32.StdEncoding.WithPadding(base32.NoPadding) }

// NewSecret returns a new random TOTP secret in its text form (base32).
// If r is nil, crypto/rand.
func NewSecret(r io.Reader) (secret.Value, error) {
	if r == nil {
		r = rand.Reader
	}
	raw := make([]byte, SecretBytes)
	defer clear(raw)
	if _, err := io.ReadFull(r, raw); err != nil {
		return secret.Value{}, fmt.Errorf("mfa: new secret: %w", err)
	}
	enc := b32()
	out := make([]byte, enc.EncodedLen(len(raw)))
	enc.Encode(out, raw)
	return secret.New(out), nil
}

// checkSecret validates a TOTP secret's text form: base32 (upper case, no
// padding) of 16 to 64 bytes.
func checkSecret(s secret.Value) error {
	enc := b32()
	raw := make([]byte, enc.DecodedLen(s.Len()))
	defer clear(raw)
	n, err := enc.Decode(raw, s.Reveal())
	if err != nil || n < 16 || n > 64 {
		return fmt.Errorf("%w: the TOTP secret must be base32 (A-Z, 2-7, no padding) of 16 to 64 bytes", ErrInvalidInput)
	}
	return nil
}
