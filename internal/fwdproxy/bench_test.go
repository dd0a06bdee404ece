package fwdproxy_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkRequest measures one keep-alive request to the same handler
// (it stands where the gateway is) two ways in one run: plain HTTP to the
// handler's own server (the reverse proxy's listener) and through an open
// forward-proxy tunnel (TLS, Host check, rewrite, token in the context).
// The difference is what the forward proxy adds per request; CONNECT and
// the handshake happen once per tunnel and are not counted.
func BenchmarkRequest(b *testing.B) {
	e := newEnv(b, envOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: e.rec, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	e.rec.quiet = true
	for _, tc := range []struct {
		name   string
		url    string
		client *http.Client
	}{
		{"reverse-proxy-listener", "http://" + ln.Addr().String() + "/binance/api/v3/ticker/price?symbol=BTCUSDT",
			&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}},
		{"forward-proxy-tunnel", "https://" + e.venue + "/api/v3/ticker/price?symbol=BTCUSDT", e.client(e.mint(true, nil, "binance"))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := tc.client.Get(tc.url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
