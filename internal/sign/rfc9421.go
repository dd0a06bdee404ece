package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// RFC 9421 algorithm names (section 6.2.2).
const (
	AlgHMACSHA256      = "hmac-sha256"
	AlgEd25519         = "ed25519"
	AlgECDSAP256SHA256 = "ecdsa-p256-sha256"
)

var (
	// ErrMissingComponent reports a covered component absent from the request.
	ErrMissingComponent = errors.New("sign: covered component missing")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("sign: signature does not verify")
	// ErrSignatureExpired reports a signature whose expires parameter has passed.
	ErrSignatureExpired = errors.New("sign: signature expired")
	// ErrNoSignature reports that the label is absent from Signature-Input
	// or Signature.
	ErrNoSignature = errors.New("sign: no signature under label")
	// ErrDigestMismatch reports a Content-Digest that does not match the body.
	ErrDigestMismatch = errors.New("sign: content-digest does not match body")
)

// Params are the RFC 9421 signature parameters. Zero values are omitted.
// They serialize in the order created, expires, keyid, nonce, alg, tag unless
// they came from ParseSignatureInput, which keeps the order received.
type Params struct {
	Created time.Time // serialized as Unix seconds
	Expires time.Time
	KeyID   string
	Nonce   string
	Alg     string
	Tag     string

	order []string // parameter names in received order, nil = canonical
}

// SignatureInput is one member of a Signature-Input dictionary.
type SignatureInput struct {
	Label      string
	Components []string // lowercase component identifiers, e.g. "@method", "content-type"
	Params     Params
}

// MessageSigner signs requests per RFC 9421. The zero value is not usable:
// set Label, Components and Algorithm.
type MessageSigner struct {
	Label      string   // dictionary key, e.g. "sig1"
	Components []string // covered components in order
	Algorithm  string   // AlgHMACSHA256, AlgEd25519 or AlgECDSAP256SHA256
	KeyID      string   // keyid parameter, omitted if empty
	Tag        string   // tag parameter, omitted if empty
	IncludeAlg bool     // emit the alg parameter
	// Validity, if positive, sets expires = created + Validity.
	Validity time.Duration
	// ContentDigest sets Content-Digest (RFC 9530, sha-256) from the body
	// and covers "content-digest" (appended if not listed).
	ContentDigest bool
}

// Sign computes the signature of r (with body, the exact bytes sent) and
// sets the Signature-Input and Signature headers under s.Label, replacing
// earlier ones. key is the shared secret (hmac-sha256), an Ed25519 key in any
// form Ed25519 accepts, or a P-256 key as a 32-byte scalar, 64 hex
// characters, PKCS#8 or SEC 1 (DER or PEM). nonce, if not empty, is sent as
// the nonce parameter; created is now.
func (s MessageSigner) Sign(r *http.Request, body []byte, key secret.Value, now time.Time, nonce string) error {
	if r == nil || r.URL == nil {
		return ErrNilRequest
	}
	if !validKey(s.Label) {
		return fmt.Errorf("%w: rfc9421 label %q", ErrInvalidHeaderName, s.Label)
	}
	comps := append([]string(nil), s.Components...)
	if s.ContentDigest {
		r.Header.Set("Content-Digest", ContentDigest(body))
		found := false
		for _, c := range comps {
			found = found || c == "content-digest"
		}
		if !found {
			comps = append(comps, "content-digest")
		}
	}
	p := Params{Created: now, KeyID: s.KeyID, Nonce: nonce, Tag: s.Tag}
	if s.Validity > 0 {
		p.Expires = now.Add(s.Validity)
	}
	if s.IncludeAlg {
		p.Alg = s.Algorithm
	}
	in := SignatureInput{Label: s.Label, Components: comps, Params: p}
	inner, err := in.serializeInner()
	if err != nil {
		return err
	}
	base, err := signatureBase(r, comps, inner)
	if err != nil {
		return err
	}
	sig, err := signBase(s.Algorithm, key, []byte(base))
	if err != nil {
		return err
	}
	r.Header.Set("Signature-Input", s.Label+"="+inner)
	r.Header.Set("Signature", s.Label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
	return nil
}

// ContentDigest returns the RFC 9530 Content-Digest field value for body
// using sha-256.
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// SignatureBase returns the RFC 9421 signature base (section 2.5) for the
// covered components and parameters: one line per component, then the
// "@signature-params" line, joined by "\n" without a trailing newline.
func SignatureBase(r *http.Request, components []string, p Params) (string, error) {
	if r == nil || r.URL == nil {
		return "", ErrNilRequest
	}
	in := SignatureInput{Components: components, Params: p}
	inner, err := in.serializeInner()
	if err != nil {
		return "", err
	}
	return signatureBase(r, components, inner)
}

func signatureBase(r *http.Request, components []string, inner string) (string, error) {
	var b strings.Builder
	seen := make(map[string]bool, len(components))
	for _, c := range components {
		if seen[c] {
			return "", fmt.Errorf("%w: rfc9421 component %q covered twice", ErrInvalidValue, c)
		}
		seen[c] = true
		v, err := componentValue(r, c)
		if err != nil {
			return "", err
		}
		b.WriteString(strconv.Quote(c))
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(inner)
	return b.String(), nil
}

func componentValue(r *http.Request, c string) (string, error) {
	switch c {
	case "@method":
		return method(r), nil
	case "@authority":
		return authority(r), nil
	case "@scheme":
		return strings.ToLower(scheme(r)), nil
	case "@target-uri":
		return strings.ToLower(scheme(r)) + "://" + hostOf(r) + requestTarget(r), nil
	case "@request-target":
		return requestTarget(r), nil
	case "@path":
		return escapedPath(r), nil
	case "@query":
		return "?" + r.URL.RawQuery, nil
	}
	if strings.HasPrefix(c, "@") || !validToken(c) || strings.ToLower(c) != c {
		return "", fmt.Errorf("%w: rfc9421 component %q", ErrUnsupported, c)
	}
	var vals []string
	switch c {
	case "host":
		vals = []string{hostOf(r)}
	case "content-length":
		vals = r.Header.Values("Content-Length")
		if len(vals) == 0 && r.ContentLength > 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vals = r.Header.Values(c)
	}
	if len(vals) == 0 {
		return "", fmt.Errorf("%w: rfc9421 component %q", ErrMissingComponent, c)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		if strings.ContainsAny(v, "\r\n\x00") {
			return "", fmt.Errorf("%w: rfc9421 component %q", ErrInvalidValue, c)
		}
		out[i] = strings.Trim(v, " \t")
	}
	return strings.Join(out, ", "), nil
}

func scheme(r *http.Request) string {
	if r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func hostOf(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	return r.URL.Host
}

// authority is the host lowercased with the scheme's default port removed.
func authority(r *http.Request) string {
	h := strings.ToLower(hostOf(r))
	switch strings.ToLower(scheme(r)) {
	case "https":
		h = strings.TrimSuffix(h, ":443")
	case "http":
		h = strings.TrimSuffix(h, ":80")
	}
	return h
}

func escapedPath(r *http.Request) string {
	if p := r.URL.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

func requestTarget(r *http.Request) string {
	t := escapedPath(r)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		t += "?" + r.URL.RawQuery
	}
	return t
}

func signBase(alg string, key secret.Value, base []byte) ([]byte, error) {
	if key.IsZero() {
		return nil, fmt.Errorf("%w: rfc9421 %s", ErrEmptyKey, alg)
	}
	switch alg {
	case AlgHMACSHA256:
		m := hmac.New(sha256.New, key.Reveal())
		m.Write(base)
		return m.Sum(nil), nil
	case AlgEd25519:
		return Ed25519(key, base)
	case AlgECDSAP256SHA256:
		k, err := p256Key(key.Reveal())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(base)
		rr, ss, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			return nil, fmt.Errorf("sign: rfc9421 ecdsa: %w", err)
		}
		out := make([]byte, 64)
		rr.FillBytes(out[:32])
		ss.FillBytes(out[32:])
		return out, nil
	}
	return nil, fmt.Errorf("%w: rfc9421 algorithm %q", ErrUnsupported, alg)
}

// p256Key parses a P-256 private key without quoting key bytes in errors.
func p256Key(b []byte) (*ecdsa.PrivateKey, error) {
	raw := b
	if len(b) == 64 {
		d := make([]byte, 32)
		if _, err := hex.Decode(d, b); err == nil {
			defer secret.Wipe(d)
			raw = d
		}
	}
	if len(raw) == 32 {
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("%w: ecdsa p-256 key", ErrInvalidKey)
		}
		return k, nil
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	var k any
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if k, err = x509.ParseECPrivateKey(der); err != nil {
			return nil, fmt.Errorf("%w: ecdsa p-256 key (%d bytes)", ErrInvalidKey, len(b))
		}
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: ecdsa key is not p-256", ErrInvalidKey)
	}
	return ek, nil
}

// Verifier checks RFC 9421 signatures made with one key. The zero value is
// not usable: set Algorithm and the matching key.
type Verifier struct {
	Algorithm string
	// Secret is the shared key for hmac-sha256.
	Secret secret.Value
	// PublicKey is an ed25519.PublicKey or *ecdsa.PublicKey (P-256).
	PublicKey crypto.PublicKey
	// Now is the clock for the expires check; nil means time.Now.
	Now func() time.Time
}

// Verify checks the signature labelled label on r. When "content-digest" is
// covered it also checks the Content-Digest field against body. It returns
// the parsed signature input on success.
func (v Verifier) Verify(r *http.Request, body []byte, label string) (SignatureInput, error) {
	if r == nil || r.URL == nil {
		return SignatureInput{}, ErrNilRequest
	}
	ins, err := ParseSignatureInput(strings.Join(r.Header.Values("Signature-Input"), ", "))
	if err != nil {
		return SignatureInput{}, err
	}
	var in *SignatureInput
	for i := range ins {
		if ins[i].Label == label {
			in = &ins[i]
		}
	}
	if in == nil {
		return SignatureInput{}, fmt.Errorf("%w: rfc9421 signature-input %q", ErrNoSignature, label)
	}
	sigs, err := parseSignatureDict(strings.Join(r.Header.Values("Signature"), ", "))
	if err != nil {
		return SignatureInput{}, err
	}
	sig, ok := sigs[label]
	if !ok {
		return SignatureInput{}, fmt.Errorf("%w: rfc9421 signature %q", ErrNoSignature, label)
	}
	if in.Params.Alg != "" && in.Params.Alg != v.Algorithm {
		return SignatureInput{}, fmt.Errorf("%w: rfc9421 alg %q, want %q", ErrBadSignature, in.Params.Alg, v.Algorithm)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if !in.Params.Expires.IsZero() && now().After(in.Params.Expires) {
		return SignatureInput{}, ErrSignatureExpired
	}
	inner, err := in.serializeInner()
	if err != nil {
		return SignatureInput{}, err
	}
	base, err := signatureBase(r, in.Components, inner)
	if err != nil {
		return SignatureInput{}, err
	}
	for _, c := range in.Components {
		if c == "content-digest" && !hasDigestMember(r.Header.Values("Content-Digest"), ContentDigest(body)) {
			return SignatureInput{}, ErrDigestMismatch
		}
	}
	switch v.Algorithm {
	case AlgHMACSHA256:
		if v.Secret.IsZero() {
			return SignatureInput{}, fmt.Errorf("%w: rfc9421 verify", ErrEmptyKey)
		}
		m := hmac.New(sha256.New, v.Secret.Reveal())
		m.Write([]byte(base))
		if !hmac.Equal(m.Sum(nil), sig) {
			return SignatureInput{}, ErrBadSignature
		}
	case AlgEd25519:
		pk, ok := v.PublicKey.(ed25519.PublicKey)
		if !ok || len(pk) != ed25519.PublicKeySize {
			return SignatureInput{}, fmt.Errorf("%w: rfc9421 verify: ed25519 public key", ErrInvalidKey)
		}
		if !ed25519.Verify(pk, []byte(base), sig) {
			return SignatureInput{}, ErrBadSignature
		}
	case AlgECDSAP256SHA256:
		pk, ok := v.PublicKey.(*ecdsa.PublicKey)
		if !ok || pk.Curve != elliptic.P256() {
			return SignatureInput{}, fmt.Errorf("%w: rfc9421 verify: p-256 public key", ErrInvalidKey)
		}
		if len(sig) != 64 {
			return SignatureInput{}, ErrBadSignature
		}
		sum := sha256.Sum256([]byte(base))
		if !ecdsaVerifyRS(pk, sum[:], sig) {
			return SignatureInput{}, ErrBadSignature
		}
	default:
		return SignatureInput{}, fmt.Errorf("%w: rfc9421 algorithm %q", ErrUnsupported, v.Algorithm)
	}
	return *in, nil
}

// hasDigestMember reports whether one member of the Content-Digest field
// equals want exactly (other algorithms' members are ignored).
func hasDigestMember(values []string, want string) bool {
	for _, v := range values {
		for _, m := range strings.Split(v, ",") {
			if strings.TrimSpace(m) == want {
				return true
			}
		}
	}
	return false
}
