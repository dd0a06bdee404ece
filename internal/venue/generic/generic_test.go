package generic

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/sign"
	"github.com/keystile/keystile/internal/venue"
)

type cred map[string]secret.Value

func (c cred) Field(n string) (secret.Value, error) {
	if v, ok := c[n]; ok {
		return v, nil
	}
	return secret.Value{}, errors.New("no field " + n)
}

func creds(c cred) venue.Credentials {
	return func(ctx context.Context, fn func(venue.Credential) error) error { return fn(c) }
}

// TestHMACTemplateMatchesSandbox: the BetPro scheme described as a
// template is accepted by the sandbox's independent verifier.
func TestHMACTemplateMatchesSandbox(t *testing.T) {
	now := time.Now()
	key, sec := "key-0001-abcdef", "CANARY-secret-generic-0001"
	v, err := New(Options{Credentials: creds(cred{"api_key": secret.FromString(key), "secret": secret.FromString(sec)}),
		Scheme: SchemeHMAC, KeyField: "api_key", SecretField: "secret", Now: func() time.Time { return now },
		HMAC: sign.HMAC{Template: "{timestamp}{method}{path}{query}{body}", TimestampFormat: "unix_ms",
			KeyHeader: "X-API-KEY", TimestampHeader: "X-TIMESTAMP", SignatureHeader: "X-SIGNATURE"}})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"market_id":"M1","side":"back"}`
	r, _ := http.NewRequest("POST", "https://api.betpro.example/api/v1/orders", strings.NewReader(body))
	if err := v.Authenticate(context.Background(), r, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.VerifyGeneric("POST", r.URL.EscapedPath(), "", []byte(body), r.Header, secret.FromString(key), secret.FromString(sec), now); err != nil {
		t.Fatalf("sandbox refuses: %v", err)
	}
}

func TestSchemes(t *testing.T) {
	c := cred{"api_key": secret.FromString("AKID-0001"), "secret": secret.FromString("s3cr3t-value-0001"),
		"private_key": secret.FromString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")}
	tests := []struct {
		name  string
		o     Options
		check func(t *testing.T, r *http.Request)
	}{
		{"header", Options{Scheme: SchemeHeader, Header: "X-Key", KeyField: "api_key"}, func(t *testing.T, r *http.Request) {
			if r.Header.Get("X-Key") != "AKID-0001" {
				t.Fatal(r.Header)
			}
		}},
		{"bearer", Options{Scheme: SchemeBearer, KeyField: "api_key"}, func(t *testing.T, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer AKID-0001" {
				t.Fatal(r.Header)
			}
		}},
		{"basic", Options{Scheme: SchemeBasic, KeyField: "api_key", SecretField: "secret"}, func(t *testing.T, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != "AKID-0001" || p != "s3cr3t-value-0001" {
				t.Fatal(r.Header)
			}
		}},
		{"query", Options{Scheme: SchemeQuery, QueryParam: "key", KeyField: "api_key"}, func(t *testing.T, r *http.Request) {
			if r.URL.Query().Get("key") != "AKID-0001" || r.URL.Query().Get("a") != "1" {
				t.Fatal(r.URL)
			}
		}},
		{"rfc9421", Options{Scheme: SchemeRFC9421, KeyField: "api_key", SecretField: "secret",
			RFC9421: sign.MessageSigner{Label: "sig1", Algorithm: sign.AlgHMACSHA256, Components: []string{"@method", "@path"}}},
			func(t *testing.T, r *http.Request) {
				if _, err := (sign.Verifier{Algorithm: sign.AlgHMACSHA256, Secret: secret.FromString("s3cr3t-value-0001")}).Verify(r, nil, "sig1"); err != nil {
					t.Fatal(err)
				}
			}},
		{"sigv4", Options{Scheme: SchemeSigV4, KeyField: "api_key", SecretField: "secret", SigV4: sign.SigV4{Region: "us-east-1", Service: "execute-api"}},
			func(t *testing.T, r *http.Request) {
				if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKID-0001/") {
					t.Fatal(r.Header)
				}
			}},
		{"ed25519", Options{Scheme: SchemeEd25519, KeyField: "api_key", SecretField: "private_key", Header: "X-Key"},
			func(t *testing.T, r *http.Request) {
				if r.Header.Get("X-Signature") == "" || r.Header.Get("X-Key") != "AKID-0001" {
					t.Fatal(r.Header)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Credentials = creds(c)
			v, err := New(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest("GET", "https://api.example/v1/x?a=1", nil)
			if err := v.Authenticate(context.Background(), r, nil); err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestNewRefusesIncompleteSchemes(t *testing.T) {
	cr := creds(cred{})
	for _, o := range []Options{
		{Credentials: cr, Scheme: "digest"},
		{Credentials: cr, Scheme: SchemeHeader},
		{Credentials: cr, Scheme: SchemeQuery},
		{Credentials: cr, Scheme: SchemeHMAC, HMAC: sign.HMAC{Template: "{secret}"}},
		{Credentials: cr, Scheme: SchemeSigV4},
		{Credentials: cr, Scheme: SchemeOAuth2},
		{Scheme: SchemeBearer},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%q) accepted incomplete options", o.Scheme)
		}
	}
}
