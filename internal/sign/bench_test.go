package sign

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

func BenchmarkHMACTemplate(b *testing.B) {
	h := HMAC{Template: "{timestamp}{method}{path}{query}{body}", TimestampHeader: "X-TS", KeyHeader: "X-Key", SignatureHeader: "X-Sig"}
	body := []byte(`{"symbol":"BTCUSDT","side":"BUY","qty":"0.01"}`)
	ak, sk := secret.FromString("api-key"), secret.FromString("secret-key-0123456789")
	r := httptest.NewRequest(http.MethodPost, "https://api.example.com/v1/order?a=1&b=2", nil)
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Sign(r, body, ak, sk, now, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEd25519(b *testing.B) {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	k := secret.New(seed)
	msg := []byte("POST/exchange/v1/offers/create{}1700000000")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Ed25519(k, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Expanded: the same with the key expanded once (what
// venue.SignEd25519 does with a vault credential).
func BenchmarkEd25519Expanded(b *testing.B) {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	k, err := Ed25519Expand(secret.New(seed))
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("POST/exchange/v1/offers/create{}1700000000")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Ed25519Expanded(k, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRFC9421(b *testing.B) {
	for _, k := range testKeys(b)[:2] {
		b.Run(k.alg, func(b *testing.B) {
			s := MessageSigner{Label: "sig1", Algorithm: k.alg, KeyID: "k", Components: []string{"@method", "@authority", "@path", "@query", "content-type"}, ContentDigest: true}
			body := []byte(`{"qty":"1"}`)
			r := httptest.NewRequest(http.MethodPost, "https://api.example.com/v1/orders?b=2&a=1", nil)
			r.Header.Set("Content-Type", "application/json")
			now := time.Unix(1700000000, 0)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Sign(r, body, k.signer, now, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
