package upstream_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/keystile/keystile/internal/upstream"
)

func ExampleNew() {
	// A stand-in venue on loopback.
	venue := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"serverTime":1}`)
	}))
	defer venue.Close()
	roots := x509.NewCertPool()
	roots.AddCert(venue.Certificate())

	tr, err := upstream.New(upstream.Options{
		Hosts:   []string{venue.Listener.Addr().String()}, // e.g. "api.binance.com"
		RootCAs: roots,                                    // tests only: production uses the system roots
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.CloseIdleConnections()
	// In the gateway, the signer sits between the Retrier and the Transport,
	// so every attempt is signed afresh.
	rt, err := upstream.NewRetrier(tr, upstream.RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, venue.URL+"/api/v3/time", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))

	// Anything outside the allowlist is refused before a dial.
	evil, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://collector.example/steal", nil)
	_, err = rt.RoundTrip(evil)
	fmt.Println(err)
	// Output:
	// 200 {"serverTime":1}
	// upstream: host not allowed: collector.example:443
}
