package sign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/secret"
)

// jwtGoldenEdDSA was computed once with python3 and the "cryptography"
// package (independent of this code): RFC 8032 section 7.1 test 1 seed,
// header and claims JSON-encoded with sort_keys=True and separators
// (",", ":"), base64url without padding:
//
//	k = Ed25519PrivateKey.from_private_bytes(seed)
//	inp = e(d(header)) + "." + e(d(claims)); inp + "." + e(k.sign(inp))
const jwtGoldenEdDSA = "eyJhbGciOiJFZERTQSIsImtpZCI6Im9yZ2FuaXphdGlvbnMvb3JnLTEvYXBpS2V5cy9rZXktMSIsIm5vbmNlIjoiMDEyMzQ1Njc4OWFiY2RlZiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAwMDAxMjAsImlzcyI6ImNkcCIsIm5iZiI6MTcwMDAwMDAwMCwic3ViIjoib3JnYW5pemF0aW9ucy9vcmctMS9hcGlLZXlzL2tleS0xIiwidXJpIjoiR0VUIGFwaS5jb2luYmFzZS5jb20vYXBpL3YzL2Jyb2tlcmFnZS9hY2NvdW50cyJ9.ebStnlG9HULdGr5JqYNuGO6bJIs8Erabm8N-_xunNMh6y87ZYJBOCztqELEjWEF95H9udDz0VvZO9kb6kCWVDA"

const rfc8032Seed1 = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"

func jwtTestClaims() (map[string]any, map[string]any) {
	h := map[string]any{"kid": "organizations/org-1/apiKeys/key-1", "nonce": "0123456789abcdef", "typ": "JWT"}
	c := map[string]any{
		"sub": "organizations/org-1/apiKeys/key-1", "iss": "cdp", "nbf": 1700000000, "exp": 1700000120,
		"uri": "GET api.coinbase.com/api/v3/brokerage/accounts",
	}
	return h, c
}

func TestJWTEdDSAKnownAnswer(t *testing.T) {
	seed, _ := hex.DecodeString(rfc8032Seed1)
	priv := ed25519.NewKeyFromSeed(seed)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  []byte
	}{
		{"seed hex", []byte(rfc8032Seed1)},
		{"seed raw", seed},
		{"base64 seed||public (CDP)", []byte(base64.StdEncoding.EncodeToString(priv))},
		{"base64 seed", []byte(base64.StdEncoding.EncodeToString(seed))},
		{"pkcs8 pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := secret.New(tt.key)
			alg, err := JWTKeyAlg(key)
			if err != nil || alg != JWTEdDSA {
				t.Fatalf("JWTKeyAlg = %q, %v", alg, err)
			}
			h, c := jwtTestClaims()
			got, err := JWT(alg, key, h, c)
			if err != nil {
				t.Fatal(err)
			}
			if got != jwtGoldenEdDSA {
				t.Fatalf("JWT =\n%s\nwant\n%s", got, jwtGoldenEdDSA)
			}
		})
	}
}

func TestJWTES256Verifies(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  []byte
	}{
		{"sec1 pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		{"pkcs8 pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8})},
		{"sec1 der", sec1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := secret.New(tt.key)
			alg, err := JWTKeyAlg(key)
			if err != nil || alg != JWTES256 {
				t.Fatalf("JWTKeyAlg = %q, %v", alg, err)
			}
			h, c := jwtTestClaims()
			tok, err := JWT(alg, key, h, c)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("%d parts", len(parts))
			}
			var gotH map[string]any
			hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
			if err := json.Unmarshal(hb, &gotH); err != nil || gotH["alg"] != "ES256" || gotH["kid"] != h["kid"] {
				t.Fatalf("header %s: %v", hb, err)
			}
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil || len(sig) != 64 {
				t.Fatalf("signature %d bytes: %v", len(sig), err)
			}
			sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			if !ecdsa.Verify(&k.PublicKey, sum[:], r, s) {
				t.Fatal("signature does not verify")
			}
			sum[0] ^= 1
			if ecdsa.Verify(&k.PublicKey, sum[:], r, s) {
				t.Fatal("signature verifies over other bytes")
			}
		})
	}
}

func TestJWTErrors(t *testing.T) {
	const canary = "CANARY-jwt-0f9e8d7c6b5a"
	h, c := jwtTestClaims()
	tests := []struct {
		name string
		alg  string
		key  []byte
		want error
	}{
		{"empty key", JWTEdDSA, nil, ErrEmptyKey},
		{"garbage es256", JWTES256, []byte(canary), ErrInvalidKey},
		{"garbage eddsa", JWTEdDSA, []byte(canary), ErrInvalidKey},
		{"unknown alg", "HS256", []byte(rfc8032Seed1), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := JWT(tt.alg, secret.New(tt.key), h, c)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), canary) {
				t.Fatal("error quotes key bytes")
			}
		})
	}
	if _, err := JWTKeyAlg(secret.FromString(canary)); !errors.Is(err, ErrInvalidKey) || strings.Contains(err.Error(), canary) {
		t.Fatalf("JWTKeyAlg(garbage) = %v", err)
	}
}

func FuzzJWTKeyAlg(f *testing.F) {
	f.Add([]byte(rfc8032Seed1))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("bm90IGEga2V5"))
	f.Fuzz(func(t *testing.T, key []byte) {
		alg, err := JWTKeyAlg(secret.New(key))
		if err != nil {
			return
		}
		if _, err := JWT(alg, secret.New(key), nil, map[string]any{"sub": "x"}); err != nil {
			t.Fatalf("JWTKeyAlg accepted a key JWT refuses: %v", err)
		}
	})
}
