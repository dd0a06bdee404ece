package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestClientDoesNotFollowRedirects: an answer redirecting to another
// endpoint is reported, never obeyed.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	dir, err := os.MkdirTemp("", "kr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var rekeys atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/v1/vault/rekey", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/v1/vault/rekey", func(w http.ResponseWriter, r *http.Request) { rekeys.Add(1) })
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c, err := NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListSecrets(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTemporaryRedirect {
		t.Fatalf("ListSecrets through a redirect: %v", err)
	}
	if n := rekeys.Load(); n != 0 {
		t.Fatalf("the client followed the redirect %d times", n)
	}
}
