package sign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/keystile/keystile/internal/secret"
)

// JWT algorithms (RFC 7518 section 3.4, RFC 8037 section 3.1).
const (
	JWTES256 = "ES256" // ECDSA P-256 with SHA-256, signature r||s (64 bytes)
	JWTEdDSA = "EdDSA" // Ed25519
)

// JWTKeyAlg reports which JWT algorithm a private key serves: JWTES256 for a
// P-256 key (SEC 1 "EC PRIVATE KEY" or PKCS#8, PEM or DER), JWTEdDSA for an Ed25519 key (any form Ed25519 accepts, or
// the standard base64 of a 32- or 64-byte key, as Coinbase CDP issues them).
func JWTKeyAlg(key secret.Value) (string, error) {
	if key.IsZero() {
		return "", fmt.Errorf("%w: jwt", ErrEmptyKey)
	}
	// A bare 32-byte (or 64-hex-character) key is read as Ed25519: only
	// encoded P-256 keys (PEM or DER) are recognised as ES256 keys.
	if b := key.Reveal(); len(b) != 32 && len(b) != 64 {
		if _, err := p256Key(b); err == nil {
			return JWTES256, nil
		}
	}
	k, err := jwtEd25519Key(key.Reveal())
	if err != nil {
		return "", fmt.Errorf("%w: jwt key is neither p-256 nor ed25519", ErrInvalidKey)
	}
	secret.Wipe(k)
	return JWTEdDSA, nil
}

// JWT returns a compact JWS (RFC 7515) over claims: header gets "alg" set to
// alg (any "alg" in header is replaced), both are JSON-encoded (object keys
// sorted), base64url-encoded without padding and signed with key. ES256
// signatures are randomized; EdDSA ones are deterministic.
func JWT(alg string, key secret.Value, header, claims map[string]any) (string, error) {
	if key.IsZero() {
		return "", fmt.Errorf("%w: jwt", ErrEmptyKey)
	}
	h := make(map[string]any, len(header)+1)
	for k, v := range header {
		h[k] = v
	}
	h["alg"] = alg
	hb, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("sign: jwt header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: jwt claims: %w", err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	var sig []byte
	switch alg {
	case JWTES256:
		k, err := p256Key(key.Reveal())
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			return "", fmt.Errorf("sign: jwt es256: %w", err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case JWTEdDSA:
		k, err := jwtEd25519Key(key.Reveal())
		if err != nil {
			return "", err
		}
		sig = ed25519.Sign(k, []byte(input))
		secret.Wipe(k)
	default:
		return "", fmt.Errorf("%w: jwt algorithm %q", ErrUnsupported, alg)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// jwtEd25519Key accepts what ed25519Key does plus standard base64 of a 32-
// or 64-byte key. The caller wipes the result.
func jwtEd25519Key(b []byte) (ed25519.PrivateKey, error) {
	if k, err := ed25519Key(b); err == nil {
		return k, nil
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	defer secret.Wipe(raw)
	n, err := base64.StdEncoding.Decode(raw, b)
	if err != nil || (n != ed25519.SeedSize && n != ed25519.PrivateKeySize) {
		return nil, fmt.Errorf("%w: ed25519 key (%d bytes)", ErrInvalidKey, len(b))
	}
	return ed25519FromRaw(raw[:n])
}
