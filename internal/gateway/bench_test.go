package gateway_test

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/token"
)

// Both benchmarks push the same request through a proxy on loopback to the
// same kind of TLS upstream with the same client; the ratio of their ns/op
// is what DESIGN.md's throughput target is about. Run with
//
//	go test -run '^$' -bench . -benchtime=2s ./internal/gateway/

// benchClient is the bot side: a pooled keep-alive client.
func benchClient(b *testing.B) *http.Client {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// benchLoop sends GETs in parallel and fails on any non-200 answer.
func benchLoop(b *testing.B, client *http.Client, target string, hdr http.Header) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				b.Error(err)
				return
			}
			for k, v := range hdr {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkGateway(b *testing.B) {
	up := newRecorder(b)
	up.quiet.Store(true)
	h := newHarness(b, config{upstream: up, events: &countSink{}})
	tok, _ := h.mint(token.CreateRequest{})
	benchLoop(b, benchClient(b), h.front.URL+"/v/api/ticker", http.Header{"Authorization": {"Bearer " + tok}})
}

func BenchmarkBareReverseProxy(b *testing.B) {
	up := newRecorder(b)
	up.quiet.Store(true)
	target := mustURL(b, "https://"+up.host()+prefixV)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: up.pool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	b.Cleanup(tr.CloseIdleConnections)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = ""
		},
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	front := httptest.NewServer(proxy)
	b.Cleanup(front.Close)
	benchLoop(b, benchClient(b), front.URL+"/api/ticker", nil)
}
