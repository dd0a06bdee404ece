package webhook

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of Verify and ParseSignature.
var (
	// ErrMalformed: the Keystile-Signature header does not parse.
	ErrMalformed = errors.New("webhook: malformed signature header")
	// ErrNoMatch: no v1 signature matches the body.
	ErrNoMatch = errors.New("webhook: signature does not match")
	// ErrStale: the signed timestamp is outside the tolerance.
	ErrStale = errors.New("webhook: timestamp outside the tolerance")
)

// Limits of a signature header.
const (
	maxHeaderLen  = 4096
	maxSignatures = 8
	sigHexLen     = 64 // hex of a SHA-256 MAC
)

// DefaultTolerance is the clock skew and delivery delay Verify accepts
// when given 0.
const DefaultTolerance = 5 * time.Minute

// Signature is a parsed Keystile-Signature header.
type Signature struct {
	// Timestamp is the signed Unix time (t=).
	Timestamp int64
	// V1 are the HMAC-SHA256 signatures (v1=), 32 bytes each.
	V1 [][]byte
}

// ParseSignature parses "t=<unix seconds>,v1=<64 hex>[,v1=...]". Exactly
// one t is required and at least one v1; unknown keys (future schemes)
// are ignored; duplicate t, empty parts, bad hex or lengths are errors.
func ParseSignature(h string) (Signature, error) {
	var s Signature
	if len(h) > maxHeaderLen {
		return s, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxHeaderLen)
	}
	seenT := false
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || v == "" {
			return Signature{}, fmt.Errorf("%w: want key=value pairs", ErrMalformed)
		}
		switch k {
		case "t":
			if seenT {
				return Signature{}, fmt.Errorf("%w: more than one t", ErrMalformed)
			}
			seenT = true
			ts, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ts <= 0 || v[0] == '+' || (len(v) > 1 && v[0] == '0') {
				return Signature{}, fmt.Errorf("%w: t must be Unix seconds", ErrMalformed)
			}
			s.Timestamp = ts
		case "v1":
			if len(v) != sigHexLen {
				return Signature{}, fmt.Errorf("%w: v1 must be %d hex digits", ErrMalformed, sigHexLen)
			}
			b, err := hex.DecodeString(v)
			if err != nil {
				return Signature{}, fmt.Errorf("%w: v1 must be hex", ErrMalformed)
			}
			if len(s.V1) == maxSignatures {
				return Signature{}, fmt.Errorf("%w: more than %d signatures", ErrMalformed, maxSignatures)
			}
			s.V1 = append(s.V1, b)
		}
	}
	if !seenT || len(s.V1) == 0 {
		return Signature{}, fmt.Errorf("%w: want t and at least one v1", ErrMalformed)
	}
	return s, nil
}

// String formats s as a header value; ParseSignature(s.String()) gives s back.
func (s Signature) String() string { return SignatureHeader(s.Timestamp, s.V1...) }

// Verify checks a webhook request: header is the Keystile-Signature value,
// body the exact bytes received. It succeeds when one v1 equals
// HMAC-SHA256(key, t + "." + body) (compared in constant time) and t is
// within tolerance of now (0 means DefaultTolerance). A receiver should
// also drop a request whose Idempotency-Key it has already processed.
func Verify(key []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	s, err := ParseSignature(header)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	want := Sign(key, s.Timestamp, body)
	ok := false
	for _, v := range s.V1 {
		ok = hmac.Equal(v, want) || ok
	}
	if !ok {
		return ErrNoMatch
	}
	if d := now.Sub(time.Unix(s.Timestamp, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}
