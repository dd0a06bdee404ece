package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"slices"
	"strings"
	"testing"
	"time"

	kconfig "github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
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

// BenchmarkGatewayDetection: the same order placement through two gateways on
// one upstream, one without and one with the anomaly detector (its Record
// as the event sink, its Admit as the Guard, every detector on),
// alternating request by request (the order swapped each time) so that
// load on the machine hits both alike. It reports each one's median
// latency and their ratio: what detection adds on the request path.
func BenchmarkGatewayDetection(b *testing.B) {
	up := newRecorder(b)
	up.quiet.Store(true)
	d := benchDetector(b)
	off := newHarness(b, config{upstream: up, events: &countSink{}})
	on := newHarness(b, config{upstream: up, events: d, guard: d})
	client := benchClient(b)
	type side struct {
		url, tok string
		took     []time.Duration
	}
	sides := [2]*side{{url: off.front.URL + "/v/api/order"}, {url: on.front.URL + "/v/api/order"}}
	sides[0].tok, _ = off.mint(token.CreateRequest{})
	sides[1].tok, _ = on.mint(token.CreateRequest{})
	send := func(s *side) {
		req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.001&price=60000"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+s.tok)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		s.took = append(s.took, time.Since(t0))
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 50 { // warm both connection pools
		send(sides[0])
		send(sides[1])
	}
	sides[0].took, sides[1].took = nil, nil
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		first := i % 2
		send(sides[first])
		send(sides[1-first])
	}
	b.StopTimer()
	if st := d.Stats(); st.Received+st.Dropped < uint64(b.N) {
		b.Fatalf("the detector saw %d events of %d requests", st.Received+st.Dropped, b.N)
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2])
	}
	mOff, mOn := med(sides[0].took), med(sides[1].took)
	b.ReportMetric(mOff, "off-p50-ns")
	b.ReportMetric(mOn, "on-p50-ns")
	b.ReportMetric(mOn/mOff, "on/off")
}

func benchDetector(b *testing.B) *detect.Detector {
	s, err := detect.Compile(kconfig.Default())
	if err != nil {
		b.Fatal(err)
	}
	d, err := detect.New(context.Background(), detect.Options{Settings: s, SourceKey: []byte("0123456789abcdef0123")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}
