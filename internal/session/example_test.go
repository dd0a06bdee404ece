package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/session"
)

func ExampleNewOAuth() {
	// A token endpoint standing in for the venue's.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"example-access","token_type":"Bearer","expires_in":3600}`))
	}))
	defer srv.Close()

	// In keystile the credential comes from the vault's WithCredential.
	cred := func(ctx context.Context, fn func(map[string]secret.Value) error) error {
		return fn(map[string]secret.Value{
			session.FieldClientID:     secret.FromString("my-client"),
			session.FieldClientSecret: secret.FromString("my-secret"),
		})
	}
	src, err := session.NewOAuth(session.OAuthOptions{TokenURL: srv.URL, Credential: cred, HTTPClient: srv.Client()})
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := src.Token(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/v1/things", nil)
	src.Apply(req, tok)
	fmt.Println("token:", tok.Value) // secret values print redacted
	fmt.Println(req.Header.Get("Authorization"))
	// Output:
	// token: REDACTED
	// Bearer example-access
}
