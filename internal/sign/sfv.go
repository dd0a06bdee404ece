package sign

import (
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed reports a Signature-Input or Signature field this package
// cannot parse. The parser accepts the canonical RFC 8941 serialization
// (single spaces, ", " between members) of the parameters defined by RFC
// 9421 section 2.3 and plain component identifiers; that is what Sign emits.
var ErrMalformed = errors.New("sign: malformed structured field")

// ParseError carries the offset of a structured-field parse failure.
type ParseError struct {
	Offset int
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("sign: structured field at offset %d: %s", e.Offset, e.Reason)
}

// Unwrap matches ErrMalformed.
func (e *ParseError) Unwrap() error { return ErrMalformed }

// maxSFInteger is the largest RFC 8941 integer (15 digits).
const maxSFInteger = 999_999_999_999_999

var canonicalOrder = []string{"created", "expires", "keyid", "nonce", "alg", "tag"}

// FormatSignatureInput serializes inputs as a Signature-Input field value.
func FormatSignatureInput(ins []SignatureInput) (string, error) {
	parts := make([]string, 0, len(ins))
	for _, in := range ins {
		if !validKey(in.Label) {
			return "", fmt.Errorf("%w: signature-input label %q", ErrInvalidHeaderName, in.Label)
		}
		inner, err := in.serializeInner()
		if err != nil {
			return "", err
		}
		parts = append(parts, in.Label+"="+inner)
	}
	return strings.Join(parts, ", "), nil
}

// serializeInner renders the inner list with parameters, as used both in
// Signature-Input and in the "@signature-params" line.
func (in SignatureInput) serializeInner() (string, error) {
	var b strings.Builder
	b.WriteByte('(')
	for i, c := range in.Components {
		if !validComponentName(c) {
			return "", fmt.Errorf("%w: rfc9421 component %q", ErrUnsupported, c)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(`"` + c + `"`)
	}
	b.WriteByte(')')
	p := in.Params
	order := p.order
	if order == nil {
		order = canonicalOrder
	}
	for _, name := range order {
		var err error
		switch name {
		case "created":
			err = writeTimeParam(&b, name, p.Created)
		case "expires":
			err = writeTimeParam(&b, name, p.Expires)
		case "keyid":
			err = writeStringParam(&b, name, p.KeyID)
		case "nonce":
			err = writeStringParam(&b, name, p.Nonce)
		case "alg":
			err = writeStringParam(&b, name, p.Alg)
		case "tag":
			err = writeStringParam(&b, name, p.Tag)
		}
		if err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

func writeTimeParam(b *strings.Builder, name string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	u := t.Unix()
	if u < 0 || u > maxSFInteger {
		return fmt.Errorf("%w: rfc9421 %s out of range", ErrInvalidValue, name)
	}
	b.WriteString(";" + name + "=" + strconv.FormatInt(u, 10))
	return nil
}

func writeStringParam(b *strings.Builder, name, v string) error {
	if v == "" {
		return nil
	}
	b.WriteString(";" + name + `="`)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: rfc9421 %s", ErrInvalidValue, name)
		}
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return nil
}

// validKey reports whether s is an RFC 8941 key.
func validKey(s string) bool {
	if s == "" || !(s[0] == '*' || (s[0] >= 'a' && s[0] <= 'z')) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-.*", c) >= 0) {
			return false
		}
	}
	return true
}

// validComponentName accepts the derived components this package computes
// and lowercase field names.
func validComponentName(c string) bool {
	switch c {
	case "@method", "@authority", "@scheme", "@target-uri", "@request-target", "@path", "@query":
		return true
	}
	return validToken(c) && strings.ToLower(c) == c
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) fail(reason string) error { return &ParseError{Offset: p.i, Reason: reason} }

func (p *sfParser) eof() bool { return p.i >= len(p.s) }

func (p *sfParser) key() (string, error) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c >= 'a' && c <= 'z' || c == '*' || (p.i > start && (c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.')) {
			p.i++
			continue
		}
		break
	}
	k := p.s[start:p.i]
	if !validKey(k) {
		p.i = start
		return "", p.fail("expected key")
	}
	return k, nil
}

func (p *sfParser) expect(c byte) error {
	if p.eof() || p.s[p.i] != c {
		return p.fail("expected " + strconv.QuoteRune(rune(c)))
	}
	p.i++
	return nil
}

func (p *sfParser) str() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return b.String(), nil
		case c == '\\':
			if p.eof() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", p.fail("bad escape")
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c < 0x20 || c > 0x7e:
			p.i--
			return "", p.fail("bad string character")
		default:
			b.WriteByte(c)
		}
	}
	return "", p.fail("unterminated string")
}

func (p *sfParser) integer() (int64, error) {
	start := p.i
	for !p.eof() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	d := p.s[start:p.i]
	if d == "" || len(d) > 15 || (len(d) > 1 && d[0] == '0') {
		p.i = start
		return 0, p.fail("expected non-negative integer")
	}
	n, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		return 0, p.fail("bad integer")
	}
	return n, nil
}

// inner parses one signature-input member value.
func (p *sfParser) inner() (SignatureInput, error) {
	var in SignatureInput
	if err := p.expect('('); err != nil {
		return in, err
	}
	for !p.eof() && p.s[p.i] != ')' {
		if len(in.Components) > 0 {
			if err := p.expect(' '); err != nil {
				return in, err
			}
		}
		at := p.i
		c, err := p.str()
		if err != nil {
			return in, err
		}
		if !validComponentName(c) {
			p.i = at
			return in, p.fail("unsupported component identifier")
		}
		for _, prev := range in.Components {
			if prev == c {
				p.i = at
				return in, p.fail("duplicate component")
			}
		}
		in.Components = append(in.Components, c)
	}
	if err := p.expect(')'); err != nil {
		return in, err
	}
	seen := map[string]bool{}
	for !p.eof() && p.s[p.i] == ';' {
		p.i++
		at := p.i
		name, err := p.key()
		if err != nil {
			return in, err
		}
		if seen[name] {
			p.i = at
			return in, p.fail("duplicate parameter")
		}
		seen[name] = true
		if err := p.expect('='); err != nil {
			return in, err
		}
		switch name {
		case "created", "expires":
			n, err := p.integer()
			if err != nil {
				return in, err
			}
			if name == "created" {
				in.Params.Created = time.Unix(n, 0)
			} else {
				in.Params.Expires = time.Unix(n, 0)
			}
		case "keyid", "nonce", "alg", "tag":
			v, err := p.str()
			if err != nil {
				return in, err
			}
			if v == "" {
				p.i = at
				return in, p.fail("empty parameter")
			}
			switch name {
			case "keyid":
				in.Params.KeyID = v
			case "nonce":
				in.Params.Nonce = v
			case "alg":
				in.Params.Alg = v
			case "tag":
				in.Params.Tag = v
			}
		default:
			p.i = at
			return in, p.fail("unknown parameter")
		}
		in.Params.order = append(in.Params.order, name)
	}
	if in.Params.order == nil {
		in.Params.order = []string{}
	}
	return in, nil
}

// dict parses "key=value, key=value" calling member for each value.
func (p *sfParser) dict(member func(key string) error) error {
	seen := map[string]bool{}
	for first := true; !p.eof(); first = false {
		if !first {
			if err := p.expect(','); err != nil {
				return err
			}
			if err := p.expect(' '); err != nil {
				return err
			}
		}
		at := p.i
		k, err := p.key()
		if err != nil {
			return err
		}
		if seen[k] {
			p.i = at
			return p.fail("duplicate label")
		}
		seen[k] = true
		if err := p.expect('='); err != nil {
			return err
		}
		if err := member(k); err != nil {
			return err
		}
	}
	return nil
}

// ParseSignatureInput parses a Signature-Input field value. For every input
// it accepts, FormatSignatureInput returns the same string.
func ParseSignatureInput(v string) ([]SignatureInput, error) {
	if v == "" {
		return nil, &ParseError{Reason: "empty field"}
	}
	p := &sfParser{s: v}
	var out []SignatureInput
	err := p.dict(func(k string) error {
		in, err := p.inner()
		if err != nil {
			return err
		}
		in.Label = k
		out = append(out, in)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseSignatureDict parses a Signature field value into label -> bytes.
func parseSignatureDict(v string) (map[string][]byte, error) {
	if v == "" {
		return nil, &ParseError{Reason: "empty field"}
	}
	p := &sfParser{s: v}
	out := map[string][]byte{}
	err := p.dict(func(k string) error {
		if err := p.expect(':'); err != nil {
			return err
		}
		end := strings.IndexByte(p.s[p.i:], ':')
		if end < 0 {
			return p.fail("unterminated byte sequence")
		}
		b, err := base64.StdEncoding.DecodeString(p.s[p.i : p.i+end])
		if err != nil {
			return p.fail("bad base64")
		}
		p.i += end + 1
		out[k] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func ecdsaVerifyRS(pk *ecdsa.PublicKey, digest, sig []byte) bool {
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pk, digest, r, s)
}
