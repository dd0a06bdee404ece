package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

var (
	// ErrInvalidTemplate reports a malformed HMAC template.
	ErrInvalidTemplate = errors.New("sign: invalid hmac template")
	// ErrUnsupported reports an unknown algorithm, encoding or format name.
	ErrUnsupported = errors.New("sign: unsupported")
	// ErrMissingNonce reports that a template uses {nonce} but none was given.
	ErrMissingNonce = errors.New("sign: template uses {nonce} but nonce is empty")
	// ErrKeyEncoding reports key material that does not decode as declared.
	// The key bytes and the decoder's message are never included.
	ErrKeyEncoding = errors.New("sign: key does not decode as declared")
)

// HMAC describes a venue's HMAC request signature in configuration terms.
// The zero value of every field except Template and one of SignatureHeader or
// SignatureQueryParam is a usable default. Values are safe for concurrent
// use; Sign does not modify h.
type HMAC struct {
	// Template is the string to sign. Placeholders: {timestamp} {nonce}
	// {method} {path} {query} {body} {api_key}. {path} is the escaped path
	// as sent, {query} the raw query as sent (without "?"), {body} the exact
	// body bytes. Other text is literal; escapes: \n \r \t \\ \{ \}.
	Template string
	// Algorithm is sha256 (default), sha384 or sha512.
	Algorithm string
	// Encoding of the signature: hex (default, lowercase), base64 or
	// base64url (unpadded).
	Encoding string
	// KeyEncoding of the secret key as stored: raw (default), hex or base64.
	KeyEncoding string
	// TimestampFormat: unix (seconds), unix_ms (default),
	// iso8601_ms (2006-01-02T15:04:05.000Z, UTC) or rfc1123 (HTTP date).
	TimestampFormat string
	// KeyHeader, if set, receives the API key.
	KeyHeader string
	// TimestampHeader, if set, receives the timestamp.
	TimestampHeader string
	// TimestampQueryParam, if set, is set in the query (replacing a
	// bot-supplied value, appended last otherwise) before signing.
	TimestampQueryParam string
	// NonceHeader, if set, receives the nonce.
	NonceHeader string
	// SignatureHeader receives SignaturePrefix + signature.
	SignatureHeader string
	// SignatureQueryParam, if set instead of SignatureHeader, receives the
	// signature as the last query parameter (Binance style). Any existing
	// occurrence is removed before signing.
	SignatureQueryParam string
	// SignaturePrefix is prepended to the encoded signature.
	SignaturePrefix string
}

// TemplateError names the offending part of an HMAC configuration.
type TemplateError struct {
	Field  string // configuration field, e.g. "template", "algorithm"
	Value  string // offending placeholder or name (never key material)
	Offset int    // byte offset in Template, -1 if not applicable
	Reason string
}

func (e *TemplateError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("sign: hmac %s: %s %q at offset %d", e.Field, e.Reason, e.Value, e.Offset)
	}
	return fmt.Sprintf("sign: hmac %s: %s %q", e.Field, e.Reason, e.Value)
}

// Unwrap lets callers match ErrInvalidTemplate or ErrUnsupported.
func (e *TemplateError) Unwrap() error {
	if e.Field == "template" {
		return ErrInvalidTemplate
	}
	return ErrUnsupported
}

type segKind uint8

const (
	segLiteral segKind = iota
	segTimestamp
	segNonce
	segMethod
	segPath
	segQuery
	segBody
	segAPIKey
)

var placeholderNames = [...]string{
	segTimestamp: "timestamp", segNonce: "nonce", segMethod: "method", segPath: "path",
	segQuery: "query", segBody: "body", segAPIKey: "api_key",
}

type segment struct {
	kind segKind
	lit  string
}

// parseTemplate splits a template into literal and placeholder segments.
func parseTemplate(t string) ([]segment, error) {
	if t == "" {
		return nil, &TemplateError{Field: "template", Reason: "empty", Offset: -1}
	}
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{kind: segLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch c {
		case '\\':
			if i+1 >= len(t) {
				return nil, &TemplateError{Field: "template", Reason: "dangling escape", Value: `\`, Offset: i}
			}
			i++
			switch t[i] {
			case 'n':
				lit.WriteByte('\n')
			case 'r':
				lit.WriteByte('\r')
			case 't':
				lit.WriteByte('\t')
			case '\\', '{', '}':
				lit.WriteByte(t[i])
			default:
				return nil, &TemplateError{Field: "template", Reason: "unknown escape", Value: t[i-1 : i+1], Offset: i - 1}
			}
		case '{':
			end := strings.IndexByte(t[i:], '}')
			if end < 0 {
				return nil, &TemplateError{Field: "template", Reason: "unclosed placeholder", Value: t[i:min(len(t), i+20)], Offset: i}
			}
			name := t[i+1 : i+end]
			kind := segLiteral
			for k, n := range placeholderNames {
				if n != "" && n == name {
					kind = segKind(k)
				}
			}
			if kind == segLiteral {
				return nil, &TemplateError{Field: "template", Reason: "unknown placeholder", Value: "{" + name + "}", Offset: i}
			}
			flush()
			segs = append(segs, segment{kind: kind})
			i += end
		case '}':
			return nil, &TemplateError{Field: "template", Reason: "unmatched", Value: "}", Offset: i}
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return segs, nil
}

func (h HMAC) hashFunc() (func() hash.Hash, error) {
	switch h.Algorithm {
	case "", "sha256":
		return sha256.New, nil
	case "sha384":
		return sha512.New384, nil
	case "sha512":
		return sha512.New, nil
	}
	return nil, &TemplateError{Field: "algorithm", Reason: "unknown", Value: h.Algorithm, Offset: -1}
}

// Validate checks the configuration; errors name the offending placeholder,
// field or value and match ErrInvalidTemplate or ErrUnsupported.
func (h HMAC) Validate() error {
	_, err := h.compile()
	return err
}

func (h HMAC) compile() ([]segment, error) {
	segs, err := parseTemplate(h.Template)
	if err != nil {
		return nil, err
	}
	if _, err := h.hashFunc(); err != nil {
		return nil, err
	}
	switch h.Encoding {
	case "", "hex", "base64", "base64url":
	default:
		return nil, &TemplateError{Field: "encoding", Reason: "unknown", Value: h.Encoding, Offset: -1}
	}
	switch h.KeyEncoding {
	case "", "raw", "hex", "base64":
	default:
		return nil, &TemplateError{Field: "key_encoding", Reason: "unknown", Value: h.KeyEncoding, Offset: -1}
	}
	switch h.TimestampFormat {
	case "", "unix", "unix_ms", "iso8601_ms", "rfc1123":
	default:
		return nil, &TemplateError{Field: "timestamp_format", Reason: "unknown", Value: h.TimestampFormat, Offset: -1}
	}
	for _, f := range []struct{ field, v string }{
		{"key_header", h.KeyHeader}, {"timestamp_header", h.TimestampHeader},
		{"nonce_header", h.NonceHeader}, {"signature_header", h.SignatureHeader},
		{"signature_query_param", h.SignatureQueryParam}, {"timestamp_query_param", h.TimestampQueryParam},
	} {
		if f.v != "" && !validToken(f.v) {
			return nil, &TemplateError{Field: f.field, Reason: "not a token", Value: f.v, Offset: -1}
		}
	}
	if (h.SignatureHeader == "") == (h.SignatureQueryParam == "") {
		return nil, &TemplateError{Field: "signature_header", Reason: "exactly one of signature_header and signature_query_param must be set", Value: h.SignatureHeader + h.SignatureQueryParam, Offset: -1}
	}
	if hasCTL([]byte(h.SignaturePrefix)) {
		return nil, &TemplateError{Field: "signature_prefix", Reason: "control character in", Value: h.SignaturePrefix, Offset: -1}
	}
	return segs, nil
}

// FormatTimestamp renders now in one of the HMAC timestamp formats.
func FormatTimestamp(format string, now time.Time) (string, error) {
	switch format {
	case "unix":
		return strconv.FormatInt(now.Unix(), 10), nil
	case "", "unix_ms":
		return strconv.FormatInt(now.UnixMilli(), 10), nil
	case "iso8601_ms":
		return now.UTC().Format("2006-01-02T15:04:05.000Z"), nil
	case "rfc1123":
		return now.UTC().Format(http.TimeFormat), nil
	}
	return "", &TemplateError{Field: "timestamp_format", Reason: "unknown", Value: format, Offset: -1}
}

// decodeKey decodes key material without ever quoting it in errors.
func decodeKey(enc string, k []byte) ([]byte, error) {
	switch enc {
	case "", "raw":
		return k, nil
	case "hex":
		out := make([]byte, hex.DecodedLen(len(k)))
		if _, err := hex.Decode(out, k); err != nil {
			secret.Wipe(out)
			return nil, fmt.Errorf("%w: hex key", ErrKeyEncoding)
		}
		return out, nil
	case "base64":
		out := make([]byte, base64.StdEncoding.DecodedLen(len(k)))
		n, err := base64.StdEncoding.Decode(out, k)
		if err != nil {
			secret.Wipe(out)
			return nil, fmt.Errorf("%w: base64 key", ErrKeyEncoding)
		}
		return out[:n], nil
	}
	return nil, &TemplateError{Field: "key_encoding", Reason: "unknown", Value: enc, Offset: -1}
}

// Sign computes the signature over the template and writes the configured
// headers or query parameters to r. body must be the exact bytes that will
// be sent; now and nonce are chosen by the caller. On error r may be
// partially modified and must not be sent.
func (h HMAC) Sign(r *http.Request, body []byte, apiKey, secretKey secret.Value, now time.Time, nonce string) error {
	if r == nil || r.URL == nil {
		return ErrNilRequest
	}
	segs, err := h.compile()
	if err != nil {
		return err
	}
	if secretKey.IsZero() {
		return fmt.Errorf("%w: hmac secret", ErrEmptyKey)
	}
	ts, err := FormatTimestamp(h.TimestampFormat, now)
	if err != nil {
		return err
	}
	for _, s := range segs {
		switch s.kind {
		case segNonce:
			if nonce == "" {
				return ErrMissingNonce
			}
		case segAPIKey:
			if apiKey.IsZero() {
				return fmt.Errorf("%w: hmac {api_key}", ErrEmptyKey)
			}
		}
	}
	if h.KeyHeader != "" {
		if err := HeaderKey(r, h.KeyHeader, apiKey); err != nil {
			return err
		}
	}
	if hasCTL([]byte(nonce)) {
		return fmt.Errorf("%w: hmac nonce", ErrInvalidValue)
	}
	if h.SignatureQueryParam != "" {
		r.URL.RawQuery = removeQueryParam(r.URL.RawQuery, h.SignatureQueryParam)
	}
	if h.TimestampQueryParam != "" {
		r.URL.RawQuery = setQueryParam(r.URL.RawQuery, h.TimestampQueryParam, url.QueryEscape(ts))
	}
	if h.TimestampHeader != "" {
		r.Header.Set(h.TimestampHeader, ts)
	}
	if h.NonceHeader != "" {
		if nonce == "" {
			return ErrMissingNonce
		}
		r.Header.Set(h.NonceHeader, nonce)
	}

	key, err := decodeKey(h.KeyEncoding, secretKey.Reveal())
	if err != nil {
		return err
	}
	if h.KeyEncoding != "" && h.KeyEncoding != "raw" {
		defer secret.Wipe(key)
	}
	hf, _ := h.hashFunc()
	mac := hmac.New(hf, key)
	for _, s := range segs {
		switch s.kind {
		case segLiteral:
			mac.Write([]byte(s.lit))
		case segTimestamp:
			mac.Write([]byte(ts))
		case segNonce:
			mac.Write([]byte(nonce))
		case segMethod:
			mac.Write([]byte(method(r)))
		case segPath:
			mac.Write([]byte(r.URL.EscapedPath()))
		case segQuery:
			mac.Write([]byte(r.URL.RawQuery))
		case segBody:
			mac.Write(body)
		case segAPIKey:
			mac.Write(apiKey.Reveal())
		}
	}
	sum := mac.Sum(nil)
	var sig string
	switch h.Encoding {
	case "", "hex":
		sig = hex.EncodeToString(sum)
	case "base64":
		sig = base64.StdEncoding.EncodeToString(sum)
	case "base64url":
		sig = base64.RawURLEncoding.EncodeToString(sum)
	}
	if h.SignatureQueryParam != "" {
		q := url.QueryEscape(h.SignatureQueryParam) + "=" + url.QueryEscape(h.SignaturePrefix+sig)
		if r.URL.RawQuery == "" {
			r.URL.RawQuery = q
		} else {
			r.URL.RawQuery += "&" + q
		}
		r.URL.ForceQuery = false
		return nil
	}
	r.Header.Set(h.SignatureHeader, h.SignaturePrefix+sig)
	return nil
}

func method(r *http.Request) string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}
