package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

func TestBasicKAT(t *testing.T) {
	v := loadVectors(t).Basic
	r := httptest.NewRequest(http.MethodPost, "https://server.example.com/token", nil)
	if err := Basic(r, secret.FromString(v.ClientID), secret.FromString(v.ClientSecret)); err != nil {
		t.Fatal(err)
	}
	if got := r.Header.Get("Authorization"); got != v.Authorization {
		t.Fatalf("Authorization = %q, want %q", got, v.Authorization)
	}
	u, p, ok := r.BasicAuth()
	if !ok || u != v.ClientID || p != v.ClientSecret {
		t.Fatalf("BasicAuth round trip = %q %q %v", u, p, ok)
	}
}

func TestBinanceKAT(t *testing.T) {
	v := loadVectors(t).Binance
	h := HMAC{Template: "{query}{body}", Algorithm: "sha256", Encoding: "hex", KeyHeader: "X-MBX-APIKEY", SignatureQueryParam: "signature"}
	for _, tc := range v.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			method := http.MethodGet
			var body []byte
			if tc.Body != "" {
				method = http.MethodPost
				body = []byte(tc.Body)
			}
			r := httptest.NewRequest(method, "https://api.binance.com/api/v3/order?"+tc.Query, bytes.NewReader(body))
			if err := h.Sign(r, body, secret.FromString(v.APIKey), secret.FromString(v.SecretKey), time.Unix(1499827319, 559e6), ""); err != nil {
				t.Fatal(err)
			}
			want := tc.Query + "&signature=" + tc.Signature
			if r.URL.RawQuery != want {
				t.Fatalf("query = %q\nwant    %q", r.URL.RawQuery, want)
			}
			if got := r.Header.Get("X-MBX-APIKEY"); got != v.APIKey {
				t.Fatalf("api key header = %q", got)
			}
			// Signing again (a retry) must replace, not append, the signature.
			if err := h.Sign(r, body, secret.FromString(v.APIKey), secret.FromString(v.SecretKey), time.Time{}, ""); err != nil {
				t.Fatal(err)
			}
			if r.URL.RawQuery != want {
				t.Fatalf("re-sign query = %q", r.URL.RawQuery)
			}
		})
	}
}

func TestRFC4231KAT(t *testing.T) {
	v := loadVectors(t).RFC4231
	for i, tc := range v.Cases {
		for _, alg := range []struct{ name, want string }{{"sha256", tc.SHA256}, {"sha512", tc.SHA512}} {
			for _, ke := range []string{"raw", "hex", "base64"} {
				t.Run(tc.Data+"/"+alg.name+"/"+ke, func(t *testing.T) {
					key, _ := hex.DecodeString(tc.KeyHex)
					switch ke {
					case "hex":
						key = []byte(tc.KeyHex)
					case "base64":
						key = []byte(base64.StdEncoding.EncodeToString(key))
					}
					h := HMAC{Template: strings.ReplaceAll(tc.Data, "?", "{body}"), Algorithm: alg.name, KeyEncoding: ke, SignatureHeader: "X-Sig"}
					if !strings.Contains(tc.Data, "?") {
						h.Template = tc.Data
					}
					r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
					if err := h.Sign(r, []byte("?"), secret.Value{}, secret.New(key), time.Unix(0, 0), ""); err != nil {
						t.Fatal(err)
					}
					if got := r.Header.Get("X-Sig"); got != alg.want {
						t.Fatalf("case %d: sig = %s, want %s", i, got, alg.want)
					}
				})
			}
		}
	}
}

func TestEd25519KAT(t *testing.T) {
	v := loadVectors(t).RFC8032
	for i, tc := range v.Cases {
		seed, _ := hex.DecodeString(tc.Seed)
		pub, _ := hex.DecodeString(tc.Public)
		msg, _ := hex.DecodeString(tc.MessageHex)
		forms := map[string][]byte{
			"seed":         seed,
			"seed+pub":     append(append([]byte{}, seed...), pub...),
			"hex seed":     []byte(tc.Seed),
			"hex seed+pub": []byte(tc.Seed + tc.Public),
		}
		for name, key := range forms {
			t.Run(name, func(t *testing.T) {
				sig, err := Ed25519(secret.New(key), msg)
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(sig); got != tc.Signature {
					t.Fatalf("case %d: sig = %s, want %s", i, got, tc.Signature)
				}
				p, err := Ed25519Public(secret.New(key))
				if err != nil || !bytes.Equal(p, pub) {
					t.Fatalf("public = %x, %v", p, err)
				}
				// The expanded key (derived once, kept per credential
				// version) signs the same.
				x, err := Ed25519Expand(secret.New(key))
				if err != nil || x.Len() != 64 || !bytes.Equal(x.Reveal()[32:], pub) {
					t.Fatalf("expand: %d bytes, %v", x.Len(), err)
				}
				sig, err = Ed25519Expanded(x, msg)
				if err != nil || hex.EncodeToString(sig) != tc.Signature {
					t.Fatalf("case %d: expanded sig = %x, %v", i, sig, err)
				}
			})
		}
	}
}

func TestEd25519BadKeys(t *testing.T) {
	v := loadVectors(t).RFC8032
	seed, _ := hex.DecodeString(v.Cases[0].Seed)
	otherPub, _ := hex.DecodeString(v.Cases[1].Public)
	tests := []struct {
		name string
		key  []byte
	}{
		{"empty", nil},
		{"short", seed[:31]},
		{"mismatched public", append(append([]byte{}, seed...), otherPub...)},
		{"128 non-hex", bytes.Repeat([]byte("z"), 128)},
		{"garbage der", []byte("not a key at all, 40 bytes long.........")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Ed25519(secret.New(tt.key), []byte("m")); err == nil {
				t.Fatal("want error")
			}
			if _, err := Ed25519Expand(secret.New(tt.key)); err == nil {
				t.Fatal("Ed25519Expand: want error")
			}
		})
	}
}

// TestEd25519ExpandedBadKeys: only a 64-byte expanded key signs.
func TestEd25519ExpandedBadKeys(t *testing.T) {
	for _, n := range []int{0, 32, 63, 65, 128} {
		if _, err := Ed25519Expanded(secret.New(make([]byte, n)), []byte("m")); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d bytes: %v, want ErrInvalidKey", n, err)
		}
	}
}

func rfc9421Request(t *testing.T) *http.Request {
	t.Helper()
	// RFC 9421 section 2.4 / B.2 test request.
	body := `{"hello": "world"}`
	r := httptest.NewRequest(http.MethodPost, "https://example.com/foo?param=Value&Pet=dog", strings.NewReader(body))
	r.Host = "example.com"
	r.Header.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Digest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:")
	r.Header.Set("Content-Length", "18")
	return r
}

func TestRFC9421HMACKAT(t *testing.T) {
	v := loadVectors(t).RFC9421.HMAC
	key, err := base64.StdEncoding.DecodeString(v.SecretBase64)
	if err != nil {
		t.Fatal(err)
	}
	r := rfc9421Request(t)
	comps := []string{"date", "@authority", "content-type"}
	created := time.Unix(1618884473, 0)
	base, err := SignatureBase(r, comps, Params{Created: created, KeyID: v.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	if base != v.SignatureBase {
		t.Fatalf("base:\n%s\nwant:\n%s", base, v.SignatureBase)
	}
	s := MessageSigner{Label: "sig-b25", Components: comps, Algorithm: AlgHMACSHA256, KeyID: v.KeyID}
	if err := s.Sign(r, nil, secret.New(key), created, ""); err != nil {
		t.Fatal(err)
	}
	if got := r.Header.Get("Signature"); got != v.SignatureHeader {
		t.Fatalf("Signature = %s, want %s", got, v.SignatureHeader)
	}
	wantInput := `sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`
	if got := r.Header.Get("Signature-Input"); got != wantInput {
		t.Fatalf("Signature-Input = %s", got)
	}
	if _, err := (Verifier{Algorithm: AlgHMACSHA256, Secret: secret.New(key)}).Verify(r, nil, "sig-b25"); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestRFC9421Ed25519KAT(t *testing.T) {
	v := loadVectors(t).RFC9421.Ed25519
	der, err := base64.StdEncoding.DecodeString(v.PrivatePKCS8)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	priv := k.(ed25519.PrivateKey)
	r := rfc9421Request(t)
	comps := []string{"date", "@method", "@path", "@authority", "content-type", "content-length"}
	created := time.Unix(1618884473, 0)
	base, err := SignatureBase(r, comps, Params{Created: created, KeyID: v.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	if base != v.SignatureBase {
		t.Fatalf("base:\n%s\nwant:\n%s", base, v.SignatureBase)
	}
	// The key is accepted as PKCS#8 DER and as a seed; both sign identically.
	for name, key := range map[string][]byte{"pkcs8": der, "seed": priv.Seed()} {
		t.Run(name, func(t *testing.T) {
			r := rfc9421Request(t)
			s := MessageSigner{Label: "sig-b26", Components: comps, Algorithm: AlgEd25519, KeyID: v.KeyID}
			if err := s.Sign(r, nil, secret.New(key), created, ""); err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("Signature"); got != v.SignatureHeader {
				t.Fatalf("Signature = %s, want %s", got, v.SignatureHeader)
			}
			pub := priv.Public().(ed25519.PublicKey)
			if _, err := (Verifier{Algorithm: AlgEd25519, PublicKey: pub}).Verify(r, nil, "sig-b26"); err != nil {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

func TestSigV4KAT(t *testing.T) {
	v := loadVectors(t).AWS
	now, err := time.Parse(time.RFC3339, v.Time)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range v.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			r := httptest.NewRequest(tc.Method, tc.URL, nil)
			r.Host = "example.amazonaws.com"
			s := SigV4{Region: v.Region, Service: v.Service}
			if err := s.Sign(r, nil, secret.FromString(v.AccessKey), secret.FromString(v.SecretKey), secret.Value{}, now); err != nil {
				t.Fatal(err)
			}
			want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + tc.Signature
			if got := r.Header.Get("Authorization"); got != want {
				t.Fatalf("Authorization =\n%s\nwant\n%s", got, want)
			}
			if got := r.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Fatalf("X-Amz-Date = %s", got)
			}
		})
	}
}
