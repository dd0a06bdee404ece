package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

func newVault(t *testing.T) *vault.Vault {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := vault.Initialize(ctx, db.Vault(), secret.New(k), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(k)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	return v
}

func start(t *testing.T, o Options) (*Server, *Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o.Socket = filepath.Join(dir, "a.sock")
	if o.Vault == nil {
		o.Vault = newVault(t)
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	c, err := NewClient(o.Socket)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestSocketModeAndRoundTrip(t *testing.T) {
	s, c := start(t, Options{})
	st, err := os.Stat(s.o.Socket)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v", st.Mode(), err)
	}
	ctx := context.Background()
	const canary = "CANARY-admin-value-88"
	info, err := c.SetSecret(ctx, "x", SetSecretRequest{Fields: map[string][]byte{"secret": []byte(canary)}})
	if err != nil || info.CurrentVersion != 1 {
		t.Fatal(info, err)
	}
	l, err := c.ListSecrets(ctx)
	if err != nil || len(l) != 1 {
		t.Fatal(l, err)
	}
	if _, err := c.ShowSecret(ctx, "nope"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("show missing: %v", err)
	}
	if _, err := c.SetSecret(ctx, "Bad Name", SetSecretRequest{Fields: map[string][]byte{"secret": []byte("v-123456")}}); !isStatus(err, http.StatusBadRequest) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := c.RevokeSecret(ctx, "x", true); err != nil {
		t.Fatal(err)
	}
	_, err = c.SetSecret(ctx, "y", SetSecretRequest{Fields: map[string][]byte{"k": []byte(canary)}})
	if !isStatus(err, http.StatusConflict) || strings.Contains(err.Error(), canary) {
		t.Fatalf("compromised value: %v", err)
	}
	if err := c.DeleteSecret(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Rekey(ctx); err != nil || res.NewKEKVersion != 2 {
		t.Fatal(res, err)
	}
}

func isStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// TestPeerUIDChecked makes the server believe it runs as another uid: the
// kernel-reported uid of this process is then not allowed, unless listed.
func TestPeerUIDChecked(t *testing.T) {
	s, c := start(t, Options{})
	s.self = os.Getuid() + 12345
	if _, err := c.ListSecrets(context.Background()); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("disallowed uid: %v", err)
	}
	s.o.AllowedUIDs = []int{os.Getuid()}
	if _, err := c.ListSecrets(context.Background()); err != nil {
		t.Fatalf("allowed uid: %v", err)
	}
}

func TestMalformedBodies(t *testing.T) {
	s, _ := start(t, Options{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.o.Socket)
	}}}
	for _, body := range []string{"{", `{"fields":{"a":"not base64!"}}`, `{"unknown":1}`, `{} {}`, strings.Repeat("x", MaxBody+10)} {
		req, _ := http.NewRequest("PUT", "http://k"+PathSecrets+"/x", strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %.20q: status %d", body, resp.StatusCode)
		}
	}
}

func TestListenRefusesLiveSocketReplacesStale(t *testing.T) {
	s, _ := start(t, Options{})
	if _, err := Listen(Options{Socket: s.o.Socket, Vault: s.o.Vault}); err == nil {
		t.Fatal("second server on a live socket")
	}
	dir, _ := os.MkdirTemp("", "adm")
	defer os.RemoveAll(dir)
	stale := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s2, err := Listen(Options{Socket: stale, Vault: s.o.Vault})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s2.Shutdown(context.Background())
}

func TestClientRefusesNonSocket(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := NewClient(f); !errors.Is(err, ErrSocketNotOur) {
		t.Fatal(err)
	}
	if _, err := NewClient(f + "x"); !errors.Is(err, ErrNotRunning) {
		t.Fatal(err)
	}
}
