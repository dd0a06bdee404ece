package generic

import (
	"slices"
	"testing"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/sign"
)

// TestPublicHeaders: the HMAC timestamp and nonce headers are public (not
// scrubbed from answers); keys and signatures are not, even when the
// configuration names one header both ways.
func TestPublicHeaders(t *testing.T) {
	c := creds(cred{"api_key": secret.FromString("key-0001-abcdef"), "secret": secret.FromString("CANARY-secret-generic-0001")})
	for _, tt := range []struct {
		name string
		h    sign.HMAC
		want []string
	}{
		{"hmac", sign.HMAC{Template: "{timestamp}{body}", KeyHeader: "X-API-KEY", TimestampHeader: "X-TIMESTAMP",
			NonceHeader: "X-NONCE", SignatureHeader: "X-SIGNATURE"}, []string{"X-TIMESTAMP", "X-NONCE"}},
		{"timestamp header is the key header", sign.HMAC{Template: "{timestamp}{body}", KeyHeader: "X-API-KEY",
			TimestampHeader: "x-api-key", SignatureHeader: "X-SIGNATURE"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Options{Credentials: c, Scheme: SchemeHMAC, KeyField: "api_key", SecretField: "secret", HMAC: tt.h})
			if err != nil {
				t.Fatal(err)
			}
			if got := v.PublicHeaders(); !slices.Equal(got, tt.want) {
				t.Errorf("PublicHeaders() = %q, want %q", got, tt.want)
			}
		})
	}
}
