package gateway_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
)

// A bot holds only its kst_ token; the gateway verifies it, checks the
// route against the token's scopes, injects the venue credential and
// scrubs any echo of it from the answer.
func ExampleNew() {
	ctx := context.Background()

	// The venue: a TLS server that echoes the API key it received.
	venueSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %s key=%s", r.Method, r.URL.Path, r.Header.Get("X-Test-Key")) // #nosec G705 -- a deliberate echo
	}))
	defer venueSrv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(venueSrv.Certificate())

	// Tokens, on SQLite.
	dir, err := os.MkdirTemp("", "keystile-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = db.Close() }()
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		fmt.Println(err)
		return
	}
	raw, _, err := tokens.Create(ctx, token.CreateRequest{Name: "my-bot", Venues: []string{"demo"}})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The only transport to the venue, and the gateway.
	tr, err := upstream.New(upstream.Options{Hosts: []string{venueSrv.Listener.Addr().String()}, RootCAs: roots})
	if err != nil {
		fmt.Println(err)
		return
	}
	base, _ := url.Parse(venueSrv.URL + "/api")
	key := secret.FromString("demo-api-key-0123456789")
	scrubber := logging.NewRedactor()
	scrubber.Register(key)
	gw, err := gateway.New(gateway.Options{
		Tokens:   tokens,
		Venues:   []gateway.Venue{{ID: "demo", Impl: &testVenue{table: testTable(), key: key}, Live: &gateway.Endpoint{BaseURL: base, Transport: tr}}},
		Scrubber: scrubber,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	bot := httptest.NewServer(gw)
	defer bot.Close()

	for _, path := range []string{"/demo/echo/ping", "/demo/api/withdraw"} {
		req, _ := http.NewRequest(http.MethodGet, bot.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+string(raw.Reveal()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Println(resp.StatusCode, string(body))
		} else {
			fmt.Println(resp.StatusCode)
		}
	}
	// Output:
	// 200 GET /api/echo/ping key=REDACTED
	// 403
}
