package sign

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

func FuzzHMACTemplate(f *testing.F) {
	f.Add("{query}{body}", "sha256", "hex", "raw", "unix_ms", []byte("a=1"))
	f.Add(`{timestamp}{method}{path}\n{nonce}{api_key}\{\}\\`, "sha512", "base64url", "hex", "iso8601_ms", []byte{})
	f.Add("{bogus}", "md5", "base32", "pem", "now", []byte("x"))
	f.Add(`\`, "", "", "", "", []byte(nil))
	f.Add("{", "sha384", "base64", "base64", "rfc1123", []byte("{}"))
	f.Fuzz(func(t *testing.T, tmpl, alg, enc, keyEnc, tsf string, body []byte) {
		h := HMAC{Template: tmpl, Algorithm: alg, Encoding: enc, KeyEncoding: keyEnc, TimestampFormat: tsf, SignatureHeader: "X-Sig", TimestampHeader: "X-TS"}
		if err := h.Validate(); err != nil {
			return
		}
		key := secret.FromString("00112233445566778899aabbccddeeff")
		if keyEnc == "base64" {
			key = secret.FromString("ABEiM0RVZneImaq7zN3u/w==")
		}
		sign := func() string {
			r := httptest.NewRequest(http.MethodPost, "https://example.com/p%20q?x=1&y=%2F", nil)
			if err := h.Sign(r, body, secret.FromString("ak"), key, time.Unix(1700000000, 5e6), "n"); err != nil {
				t.Fatalf("valid config failed to sign: %v", err)
			}
			return r.Header.Get("X-Sig")
		}
		if a, b := sign(), sign(); a == "" || a != b {
			t.Fatalf("signature not deterministic: %q %q", a, b)
		}
	})
}

func FuzzParseSignatureInput(f *testing.F) {
	f.Add(`sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`)
	f.Add(`sig1=("@method" "@path");keyid="k\"1\\";created=0;expires=1, sig2=()`)
	f.Add(`a=();tag="x";alg="ed25519";nonce="n"`)
	f.Add(`sig1=("@method"  "@path")`)
	f.Add(`sig1=("@method");created=-1`)
	f.Add(`*x=("a");created=999999999999999`)
	f.Fuzz(func(t *testing.T, v string) {
		ins, err := ParseSignatureInput(v)
		if err != nil {
			return
		}
		out, err := FormatSignatureInput(ins)
		if err != nil {
			t.Fatalf("format of accepted input %q failed: %v", v, err)
		}
		if out != v {
			t.Fatalf("round trip:\n in  %q\n out %q", v, out)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add("sig1=:AAEC:, sig2=::")
	f.Add("sig1=:not base64:")
	f.Add("sig1=:")
	f.Fuzz(func(t *testing.T, v string) {
		_, _ = parseSignatureDict(v)
	})
}

func FuzzKeys(f *testing.F) {
	f.Add([]byte("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
	f.Add(make([]byte, 32))
	f.Add(make([]byte, 64))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, key []byte) {
		_, _ = Ed25519(secret.New(key), []byte("m"))
		_, _ = p256Key(key)
	})
}
