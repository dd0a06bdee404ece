package sign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

type testKey struct {
	alg    string
	signer secret.Value
	v      Verifier
}

func testKeys(t testing.TB) []testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecRaw, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	hk := []byte("0123456789abcdef0123456789abcdef")
	return []testKey{
		{AlgHMACSHA256, secret.New(hk), Verifier{Algorithm: AlgHMACSHA256, Secret: secret.New(hk)}},
		{AlgEd25519, secret.New(priv), Verifier{Algorithm: AlgEd25519, PublicKey: pub}},
		{AlgECDSAP256SHA256, secret.New(ecRaw), Verifier{Algorithm: AlgECDSAP256SHA256, PublicKey: &ec.PublicKey}},
		{AlgECDSAP256SHA256 + "/pkcs8", secret.New(ecDER), Verifier{Algorithm: AlgECDSAP256SHA256, PublicKey: &ec.PublicKey}},
	}
}

func newSignedRequest(t testing.TB, k testKey, body string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://api.example.com:443/v1/orders?b=2&a=1", strings.NewReader(body))
	r.Host = "API.example.com:443"
	r.Header.Set("Content-Type", "application/json")
	s := MessageSigner{
		Label: "sig1", Algorithm: strings.Split(k.alg, "/")[0], KeyID: "k-1", Tag: "keystile", IncludeAlg: true,
		Components:    []string{"@method", "@authority", "@scheme", "@target-uri", "@request-target", "@path", "@query", "content-type"},
		Validity:      time.Minute,
		ContentDigest: true,
	}
	if err := s.Sign(r, []byte(body), k.signer, time.Unix(1700000000, 0), "nonce-1"); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRFC9421RoundTrip(t *testing.T) {
	body := `{"qty":"1"}`
	for _, k := range testKeys(t) {
		t.Run(k.alg, func(t *testing.T) {
			k.v.Now = func() time.Time { return time.Unix(1700000030, 0) }
			r := newSignedRequest(t, k, body)
			in, err := k.v.Verify(r, []byte(body), "sig1")
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if in.Params.KeyID != "k-1" || in.Params.Nonce != "nonce-1" || in.Params.Alg != strings.Split(k.alg, "/")[0] || len(in.Components) != 9 {
				t.Fatalf("input = %+v", in)
			}
			wantIn := `sig1=("@method" "@authority" "@scheme" "@target-uri" "@request-target" "@path" "@query" "content-type" "content-digest");created=1700000000;expires=1700000060;keyid="k-1";nonce="nonce-1";alg="` + in.Params.Alg + `";tag="keystile"`
			if got := r.Header.Get("Signature-Input"); got != wantIn {
				t.Fatalf("Signature-Input = %s\nwant             %s", got, wantIn)
			}
			base, err := SignatureBase(r, in.Components, in.Params)
			if err != nil {
				t.Fatal(err)
			}
			wantBase := strings.Join([]string{
				`"@method": POST`,
				`"@authority": api.example.com`,
				`"@scheme": https`,
				`"@target-uri": https://API.example.com:443/v1/orders?b=2&a=1`,
				`"@request-target": /v1/orders?b=2&a=1`,
				`"@path": /v1/orders`,
				`"@query": ?b=2&a=1`,
				`"content-type": application/json`,
				`"content-digest": ` + ContentDigest([]byte(body)),
				`"@signature-params": ` + strings.TrimPrefix(wantIn, "sig1="),
			}, "\n")
			if base != wantBase {
				t.Fatalf("base:\n%s\nwant:\n%s", base, wantBase)
			}
		})
	}
}

// TestRFC9421Tamper changes every byte of the signature and of each covered
// input in turn; verification must fail each time.
func TestRFC9421Tamper(t *testing.T) {
	body := `{"qty":"1"}`
	for _, k := range testKeys(t) {
		t.Run(k.alg, func(t *testing.T) {
			k.v.Now = func() time.Time { return time.Unix(1700000030, 0) }
			orig := newSignedRequest(t, k, body)
			mutations := map[string]func(r *http.Request, i int) bool{
				"signature": func(r *http.Request, i int) bool {
					v := r.Header.Get("Signature")
					raw, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(v, "sig1=:"), ":"))
					if i >= len(raw) {
						return false
					}
					raw[i] ^= 1
					r.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(raw)+":")
					return true
				},
				"path": func(r *http.Request, i int) bool {
					p := []byte(r.URL.Path)
					if i >= len(p) {
						return false
					}
					p[i] ^= 1
					r.URL.Path = string(p)
					return true
				},
				"query": func(r *http.Request, i int) bool {
					q := []byte(r.URL.RawQuery)
					if i >= len(q) {
						return false
					}
					q[i]++
					r.URL.RawQuery = string(q)
					return true
				},
				"content-type": func(r *http.Request, i int) bool {
					v := []byte(r.Header.Get("Content-Type"))
					if i >= len(v) {
						return false
					}
					v[i] ^= 1
					r.Header.Set("Content-Type", string(v))
					return true
				},
				"signature-input": func(r *http.Request, i int) bool {
					v := []byte(r.Header.Get("Signature-Input"))
					if i >= len(v) {
						return false
					}
					v[i] ^= 1
					r.Header.Set("Signature-Input", string(v))
					return true
				},
				"body": func(r *http.Request, i int) bool { return i < len(body) },
			}
			for name, mutate := range mutations {
				for i := 0; ; i++ {
					r := orig.Clone(orig.Context())
					r.Header = orig.Header.Clone()
					u := *orig.URL
					r.URL = &u
					if !mutate(r, i) {
						break
					}
					b := []byte(body)
					if name == "body" {
						b[i] ^= 1
					}
					if _, err := k.v.Verify(r, b, "sig1"); err == nil {
						t.Fatalf("%s byte %d changed: verify succeeded", name, i)
					}
				}
			}
		})
	}
}

func TestRFC9421VerifyErrors(t *testing.T) {
	keys := testKeys(t)
	hk := keys[0]
	body := "x"
	tests := []struct {
		name    string
		v       Verifier
		label   string
		mutate  func(r *http.Request)
		wantErr error
	}{
		{"expired", Verifier{Algorithm: AlgHMACSHA256, Secret: hk.v.Secret, Now: func() time.Time { return time.Unix(1700000061, 0) }}, "sig1", nil, ErrSignatureExpired},
		{"unknown label", hk.v, "sig2", nil, ErrNoSignature},
		{"wrong alg", Verifier{Algorithm: AlgEd25519, PublicKey: keys[1].v.PublicKey}, "sig1", nil, ErrBadSignature},
		{"wrong key", Verifier{Algorithm: AlgHMACSHA256, Secret: secret.FromString("other")}, "sig1", nil, ErrBadSignature},
		{"missing input", hk.v, "sig1", func(r *http.Request) { r.Header.Del("Signature-Input") }, ErrMalformed},
		{"garbage signature", hk.v, "sig1", func(r *http.Request) { r.Header.Set("Signature", "sig1=:!!:") }, ErrMalformed},
		{"digest mismatch", hk.v, "sig1", func(r *http.Request) { r.Header.Set("Content-Digest", ContentDigest([]byte("y"))) }, ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSignedRequest(t, hk, body)
			if tt.mutate != nil {
				tt.mutate(r)
			}
			if tt.v.Now == nil {
				tt.v.Now = func() time.Time { return time.Unix(1700000001, 0) }
			}
			_, err := tt.v.Verify(r, []byte(body), tt.label)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRFC9421SignErrors(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	k := secret.FromString("k")
	tests := []struct {
		name    string
		s       MessageSigner
		wantErr error
	}{
		{"missing header", MessageSigner{Label: "s", Components: []string{"x-missing"}, Algorithm: AlgHMACSHA256}, ErrMissingComponent},
		{"unknown derived", MessageSigner{Label: "s", Components: []string{"@status"}, Algorithm: AlgHMACSHA256}, ErrUnsupported},
		{"uppercase field", MessageSigner{Label: "s", Components: []string{"Date"}, Algorithm: AlgHMACSHA256}, ErrUnsupported},
		{"bad label", MessageSigner{Label: "Sig", Algorithm: AlgHMACSHA256}, ErrInvalidHeaderName},
		{"unknown alg", MessageSigner{Label: "s", Algorithm: "rsa-v1_5-sha256"}, ErrUnsupported},
		{"duplicate", MessageSigner{Label: "s", Components: []string{"@method", "@method"}, Algorithm: AlgHMACSHA256}, ErrInvalidValue},
		{"bad keyid", MessageSigner{Label: "s", KeyID: "a\nb", Algorithm: AlgHMACSHA256}, ErrInvalidValue},
		{"bad ecdsa key", MessageSigner{Label: "s", Algorithm: AlgECDSAP256SHA256}, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Sign(r, nil, k, time.Unix(1, 0), ""); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestRFC9421Loopback sends signed requests through a real client to a
// loopback server that verifies them from what it received on the wire.
func TestRFC9421Loopback(t *testing.T) {
	k := testKeys(t)[1]
	k.v.Now = func() time.Time { return time.Unix(1700000000, 0) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		r.URL.Scheme, r.URL.Host = "http", r.Host
		if _, err := k.v.Verify(r, body, "sig1"); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	tests := []struct{ name, path, body string }{
		{"escaped path and query order kept", "/a%2Fb/c?z=1&a=%20&a=0", `{"a":1}`},
		{"empty body", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			s := MessageSigner{Label: "sig1", Algorithm: AlgEd25519, Components: []string{"@method", "@authority", "@path", "@query", "content-length"}, ContentDigest: true}
			if tt.body == "" {
				s.Components = s.Components[:4]
			}
			if err := s.Sign(req, []byte(tt.body), k.signer, time.Unix(1700000000, 0), ""); err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d: %s", resp.StatusCode, msg)
			}
		})
	}
}
