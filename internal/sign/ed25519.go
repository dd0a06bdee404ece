package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/keystile/keystile/internal/secret"
)

var (
	// ErrInvalidKey reports key material of the wrong size or shape. The key
	// bytes are never included.
	ErrInvalidKey = errors.New("sign: invalid key")
	// ErrKeyMismatch reports a 64-byte Ed25519 key whose public half does not
	// belong to its seed.
	ErrKeyMismatch = errors.New("sign: ed25519 public half does not match seed")
)

// Ed25519 signs msg (RFC 8032, pure Ed25519) with priv, which may be a
// 32-byte seed, a 64-byte seed||public key (Go and DMarket layout), either
// of those hex-encoded (64 or 128 characters), or a PKCS#8 private key in
// DER or PEM form.
func Ed25519(priv secret.Value, msg []byte) ([]byte, error) {
	k, err := ed25519Key(priv.Reveal())
	if err != nil {
		return nil, err
	}
	defer secret.Wipe(k)
	return ed25519.Sign(k, msg), nil
}

// Ed25519Expand returns priv (any form Ed25519 accepts) as Go's 64-byte
// private key, seed || public key, computed once: Ed25519Expanded signs
// with it without deriving the public key again (one scalar
// multiplication instead of two, about half of Ed25519's cost). The
// caller wipes it.
func Ed25519Expand(priv secret.Value) (secret.Value, error) {
	k, err := ed25519Key(priv.Reveal())
	if err != nil {
		return secret.Value{}, err
	}
	return secret.New(k), nil
}

// Ed25519Expanded signs msg with a key made by Ed25519Expand.
func Ed25519Expanded(key secret.Value, msg []byte) ([]byte, error) {
	if key.Len() != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: expanded ed25519 key of %d bytes", ErrInvalidKey, key.Len())
	}
	return ed25519.Sign(ed25519.PrivateKey(key.Reveal()), msg), nil
}

// Ed25519Public returns the public key belonging to priv (any form accepted
// by Ed25519).
func Ed25519Public(priv secret.Value) (ed25519.PublicKey, error) {
	k, err := ed25519Key(priv.Reveal())
	if err != nil {
		return nil, err
	}
	defer secret.Wipe(k)
	return bytes.Clone(k[ed25519.SeedSize:]), nil
}

// ed25519Key returns a freshly allocated private key the caller must wipe.
func ed25519Key(b []byte) (ed25519.PrivateKey, error) {
	switch {
	case len(b) == 2*ed25519.SeedSize || len(b) == 2*ed25519.PrivateKeySize:
		raw := make([]byte, len(b)/2)
		if _, err := hex.Decode(raw, b); err == nil {
			defer secret.Wipe(raw)
			return ed25519FromRaw(raw)
		}
		secret.Wipe(raw)
		if len(b) == ed25519.PrivateKeySize {
			return ed25519FromRaw(b)
		}
		return nil, fmt.Errorf("%w: ed25519 key (%d bytes, not hex)", ErrInvalidKey, len(b))
	case len(b) == ed25519.SeedSize:
		return ed25519FromRaw(b)
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: ed25519 key (%d bytes)", ErrInvalidKey, len(b))
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: ed25519 key: pkcs8 holds %T", ErrInvalidKey, k)
	}
	return ek, nil
}

func ed25519FromRaw(raw []byte) (ed25519.PrivateKey, error) {
	k := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if len(raw) == ed25519.PrivateKeySize && !bytes.Equal(k[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
		secret.Wipe(k)
		return nil, ErrKeyMismatch
	}
	return k, nil
}
