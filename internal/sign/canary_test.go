package sign

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

const canary = "CANARY-s1gn-9e4b7c"

// TestNoKeyBytesInErrors drives every function into its error paths with
// canary key material and checks no error text contains the canary, in
// plain, hex or base64 form, nor any part of it a decoder might quote.
func TestNoKeyBytesInErrors(t *testing.T) {
	forms := []string{canary, hex.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte(canary)), "s1gn", "'C'", "U+0043"}
	c := func(suffix string) secret.Value { return secret.FromString(canary + suffix) }
	// A 64-character non-hex canary key exercises the "raw 64-byte" path.
	c64 := secret.FromString(strings.Repeat(canary, 4)[:64])
	c128 := secret.FromString(strings.Repeat(canary, 8)[:128])
	now := time.Unix(1700000000, 0)
	calls := map[string]func(r *http.Request) error{
		"HeaderKey ctl": func(r *http.Request) error { return HeaderKey(r, "X-Key", c("\r\n")) },
		"Bearer ctl":    func(r *http.Request) error { return Bearer(r, c(" x")) },
		"Basic colon":   func(r *http.Request) error { return Basic(r, c(":"), c("")) },
		"Basic ctl":     func(r *http.Request) error { return Basic(r, c(""), c("\x00")) },
		"HMAC hex key": func(r *http.Request) error {
			return HMAC{Template: "{body}", KeyEncoding: "hex", SignatureHeader: "S"}.Sign(r, nil, c(""), c(""), now, "")
		},
		"HMAC b64 key": func(r *http.Request) error {
			return HMAC{Template: "{body}", KeyEncoding: "base64", SignatureHeader: "S"}.Sign(r, nil, c(""), c("!"), now, "")
		},
		"HMAC api key": func(r *http.Request) error {
			return HMAC{Template: "{body}", KeyHeader: "K", SignatureHeader: "S"}.Sign(r, nil, c("\n"), c(""), now, "")
		},
		"Ed25519 short":  func(*http.Request) error { _, err := Ed25519(c(""), nil); return err },
		"Ed25519 64 raw": func(*http.Request) error { _, err := Ed25519(c64, nil); return err },
		"Ed25519 128":    func(*http.Request) error { _, err := Ed25519(c128, nil); return err },
		"Ed25519 pem": func(*http.Request) error {
			_, err := Ed25519(c("-----BEGIN PRIVATE KEY-----\n"+canary+"\n-----END PRIVATE KEY-----\n"), nil)
			return err
		},
		"RFC9421 ecdsa": func(r *http.Request) error {
			return MessageSigner{Label: "s", Algorithm: AlgECDSAP256SHA256}.Sign(r, nil, c(""), now, "")
		},
		"RFC9421 ecdsa64": func(r *http.Request) error {
			return MessageSigner{Label: "s", Algorithm: AlgECDSAP256SHA256}.Sign(r, nil, c64, now, "")
		},
		"RFC9421 ed": func(r *http.Request) error {
			return MessageSigner{Label: "s", Algorithm: AlgEd25519}.Sign(r, nil, c(""), now, "")
		},
		"RFC9421 verify": func(r *http.Request) error {
			if err := (MessageSigner{Label: "s", Algorithm: AlgHMACSHA256}).Sign(r, nil, c(""), now, ""); err != nil {
				return err
			}
			_, err := Verifier{Algorithm: AlgHMACSHA256, Secret: c("x")}.Verify(r, nil, "s")
			return err
		},
		"SigV4 access": func(r *http.Request) error {
			return SigV4{Region: "r", Service: "s"}.Sign(r, nil, c(" "), c(""), secret.Value{}, now)
		},
		"SigV4 token": func(r *http.Request) error {
			return SigV4{Region: "r", Service: "s"}.Sign(r, nil, c(""), c(""), c("\n"), now)
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
			err := call(r)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, f := range forms {
				if strings.Contains(err.Error(), f) {
					t.Fatalf("error leaks key material (%q): %v", f, err)
				}
			}
		})
	}
}
