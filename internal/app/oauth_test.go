package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/vault"
)

// TestOAuthLoginThroughAdmin runs `keystile oauth login` end to end: the
// server runs the authorization-code + PKCE flow against an authorization
// server written here, a "browser" follows the URL, and the refresh token
// lands in the vault.
func TestOAuthLoginThroughAdmin(t *testing.T) {
	var mu sync.Mutex
	codes := map[string]string{} // code -> code_challenge
	as := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authorize":
			q := r.URL.Query()
			if q.Get("code_challenge_method") != "S256" || q.Get("client_id") != "cid-1" {
				http.Error(w, "bad request", 400)
				return
			}
			mu.Lock()
			codes["code-1"] = q.Get("code_challenge") + " " + q.Get("redirect_uri")
			mu.Unlock()
			http.Redirect(w, r, q.Get("redirect_uri")+"?code=code-1&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
		case "/token":
			_ = r.ParseForm()
			id, sec, _ := r.BasicAuth()
			mu.Lock()
			want := codes[r.PostForm.Get("code")]
			mu.Unlock()
			sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
			got := base64.RawURLEncoding.EncodeToString(sum[:]) + " " + r.PostForm.Get("redirect_uri")
			if id != "cid-1" || sec != "CANARY-client-secret-77" || want == "" || got != want {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"CANARY-refresh-token-99"}`)
		}
	}))
	defer as.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := os.MkdirTemp("", "oa")
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "d")
	if _, err := Init(ctx, Env{}, InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(base, "ca.pem")
	_ = os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: as.Certificate().Raw}), 0o600)
	yaml := fmt.Sprintf(`gateway: {listen: "127.0.0.1:0"}
venues:
  video:
    type: stapi
    credential: video
    base_url: %[1]s
    tls: {ca_file: %[2]q}
    auth:
      scheme: oauth2
      oauth2: {token_url: %[1]s/token, auth_url: %[1]s/authorize}
`, as.URL, ca)
	cfg, err := config.Parse("k.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	red := logging.NewRedactor()
	lw := writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) })
	srv, err := NewServer(ctx, Env{}, ServerOptions{DataDir: dir, Config: cfg, Redactor: red,
		Logger: logging.New(lw, logging.Options{Redactor: red, Level: -4})})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c, err := admin.NewClient(filepath.Join(dir, SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetSecret(ctx, "video", admin.SetSecretRequest{Fields: map[string][]byte{
		"client_id": []byte("cid-1"), "client_secret": []byte("CANARY-client-secret-77")}}); err != nil {
		t.Fatal(err)
	}
	browser := as.Client()
	ev, err := c.OAuthLogin(ctx, "video", admin.OAuthLoginRequest{}, func(u string) {
		go func() {
			resp, err := browser.Get(u)
			if err == nil {
				resp.Body.Close()
			}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Credential != "video" || ev.Version != 2 {
		t.Fatalf("event = %+v", ev)
	}
	var got string
	if err := srv.vault.WithCredential(ctx, "video", func(cr *vault.Credential) error {
		v, err := cr.Field("refresh_token")
		got = string(v.Reveal())
		return err
	}); err != nil || got != "CANARY-refresh-token-99" {
		t.Fatalf("refresh token in vault = %q, %v", got, err)
	}
	// A venue without auth_url is refused clearly.
	if _, err := c.OAuthLogin(ctx, "nope", admin.OAuthLoginRequest{}, func(string) {}); err == nil || !strings.Contains(err.Error(), "no auth.oauth2.auth_url") {
		t.Fatalf("unknown venue: %v", err)
	}
	cancel()
	<-done
	logMu.Lock()
	defer logMu.Unlock()
	for _, c := range []string{"CANARY-client-secret-77", "CANARY-refresh-token-99"} {
		if strings.Contains(logs.String(), c) {
			t.Errorf("log contains %s", c)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
