package fwdproxy_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/keystile/keystile/internal/fwdproxy"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// Example: a bot's HTTP client with HTTPS_PROXY-style settings (the token
// as proxy user, the local CA as its root) calls the venue's real URL; the
// handler behind the proxy (keystile's gateway in serve) receives it in the
// reverse-proxy form /<venue>/<path>.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fwdproxy-example")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	defer db.Close()
	b := make([]byte, vault.KeySize)
	_, _ = rand.Read(b)
	root := secret.New(b)
	_ = vault.Initialize(ctx, db.Vault(), root, map[string][]byte{"master_key": []byte(`{}`)}, time.Now())
	v, _ := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: root})
	defer v.Close(ctx)
	cao := localca.Options{Vault: v, CertFile: filepath.Join(dir, "local-ca.pem")}
	_, _ = localca.Create(ctx, cao, localca.CreateOptions{})
	ca, _ := localca.Load(ctx, cao)
	tokens, _ := token.New(ctx, token.Options{Store: db.Tokens()})
	raw, _, _ := tokens.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"binance"}, Test: true})

	gateway := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "gateway got ", r.URL.Path) })
	p, err := fwdproxy.New(fwdproxy.Options{Handler: gateway, Tokens: tokens, Certs: ca,
		Routes: []fwdproxy.Route{{Venue: "binance", Host: "127.0.0.1", Port: 8443, Test: true, HasTest: true}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = p.Serve(ln) }()
	defer p.Close()

	proxyURL := &url.URL{Scheme: "http", Host: ln.Addr().String(), User: url.User(string(raw.Reveal()))}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://127.0.0.1:8443/api/v3/ticker/price?symbol=BTCUSDT")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: gateway got /binance/api/v3/ticker/price
}
