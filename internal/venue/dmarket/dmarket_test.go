package dmarket

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
)

type cred map[string]secret.Value

func (c cred) Field(n string) (secret.Value, error) {
	if v, ok := c[n]; ok {
		return v, nil
	}
	return secret.Value{}, errors.New("no field")
}

// TestSignatureAcceptedBySandbox signs requests with the RFC 8032 test 1
// key (the DMarket layout: seed || public, 128 hex) and has the sandbox's
// independent verifier check them.
func TestSignatureAcceptedBySandbox(t *testing.T) {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Unix(1700000000, 0)
	v, err := New(Options{Now: func() time.Time { return now }, Credentials: func(ctx context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldPublicKey: secret.FromString(hex.EncodeToString(pub)), FieldSecretKey: secret.FromString(hex.EncodeToString(priv))})
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ method, url, body string }{
		{"GET", "https://api.dmarket.com/account/v1/balance", ""},
		{"GET", "https://api.dmarket.com/exchange/v1/market/items?gameId=a8db&title=AK-47%20%7C%20Redline&limit=10", ""},
		{"POST", "https://api.dmarket.com/marketplace-api/v1/user-targets/create", `{"GameID":"a8db","Targets":[{"Amount":"1"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.url, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if err := v.Authenticate(context.Background(), r, []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if err := sandbox.VerifyDMarket(tt.method, r.URL.Path, r.URL.RawQuery, []byte(tt.body), r.Header, pub, now); err != nil {
				t.Fatalf("sandbox verifier refuses: %v", err)
			}
			if err := sandbox.VerifyDMarket(tt.method, r.URL.Path, r.URL.RawQuery, []byte(tt.body+" "), r.Header, pub, now); err == nil {
				t.Fatal("verifier accepted a changed body")
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct{ method, path, want string }{
		{"GET", "/account/v1/balance", venue.OpAccountRead},
		{"POST", "/marketplace-api/v1/user-targets/create", venue.OpOrderPlace},
		{"POST", "/marketplace-api/v1/user-targets/delete", venue.OpOrderCancel},
		{"POST", "/exchange/v1/withdraw-assets", venue.OpWalletWithdraw},
		{"DELETE", "/account/v1/balance", ""},
	}
	v, _ := New(Options{Credentials: func(context.Context, func(venue.Credential) error) error { return nil }})
	for _, tt := range tests {
		if op, _ := v.Classify(&venue.Request{Method: tt.method, Path: tt.path}); op != tt.want {
			t.Errorf("%s %s = %q, want %q", tt.method, tt.path, op, tt.want)
		}
	}
}
