package localca_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// Example: create the CA once (keystile init does), load it, and serve
// TLS with leaves it issues; a client trusting only the CA connects.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "localca-example")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	defer db.Close()
	b := make([]byte, vault.KeySize)
	_, _ = rand.Read(b)
	root := secret.New(b)
	_ = vault.Initialize(ctx, db.Vault(), root, map[string][]byte{"master_key": []byte(`{}`)}, time.Now())
	v, _ := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: root})
	defer v.Close(ctx)

	o := localca.Options{Vault: v, CertFile: filepath.Join(dir, "local-ca.pem")}
	if _, err := localca.Create(ctx, o, localca.CreateOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	ca, err := localca.Load(ctx, o)
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, _ := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf(hi.Context(), "127.0.0.1") }})
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "hello over keystile TLS")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + ln.Addr().(*net.TCPAddr).String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
