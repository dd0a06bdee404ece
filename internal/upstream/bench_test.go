package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"
)

// BenchmarkRoundTrip compares the Transport with a bare http.Transport using
// a tuned idle pool, against the same local TLS server in the same run.
func BenchmarkRoundTrip(b *testing.B) {
	srv, _ := tlsServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	tr, err := New(Options{Hosts: []string{hostOf(srv)}, RootCAs: poolFor(srv)})
	if err != nil {
		b.Fatal(err)
	}
	bare := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: poolFor(srv), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 256,
	}
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"keystile", tr}, {"bare-tuned", bare}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api", nil)
					resp, err := bc.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
	}
	tr.CloseIdleConnections()
	bare.CloseIdleConnections()
}
