package policy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
)

func noCreds(context.Context, func(venue.Credential) error) error { return context.Canceled }

// TestPriceSourceSandbox: the price band is checked against the Binance
// emulator's ticker (37500), read once per TTL however many orders ask.
func TestPriceSourceSandbox(t *testing.T) {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueBinance}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base, _ := url.Parse(s.Info().Venues[sandbox.VenueBinance].BaseURL)
	bv, err := binance.New(binance.Options{Credentials: noCreds})
	if err != nil {
		t.Fatal(err)
	}
	ps := policy.NewPriceSource(bv, base, http.DefaultTransport, time.Hour)
	e := policy.New(policy.Options{})
	e.Load(compile(t, "policies:\n  p:\n    price_band: \"2%\"\n    max_notional: \"1000 USDT\"\n"))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			in := orderInput("p")
			in.Prices = ps
			in.Order.Price = "38000" // 1.33% above 37500
			if i%2 == 1 {
				in.Order.Price = "39000" // 4%
			}
			d := e.Evaluate(context.Background(), in)
			if want := i%2 == 0; d.Allow != want || (!want && d.Rule != "policy.p.price_band") {
				t.Errorf("price %s: %+v", in.Order.Price, d)
			}
		})
	}
	wg.Wait()
	// A market order's notional from the reference: 0.02 × 37500 = 750.
	in := orderInput("p")
	in.Prices = ps
	in.Order.Type, in.Order.Price, in.Order.Quantity = "market", "", "0.02"
	if d := e.Evaluate(context.Background(), in); !d.Allow || d.Notional != "750 USDT" {
		t.Errorf("market order: %+v", d)
	}
	if n := s.Stats(sandbox.VenueBinance).Operations["ticker.price"]; n != 1 {
		t.Errorf("%d ticker requests, want 1 (cached, de-duplicated)", n)
	}
}

func TestPriceSourceErrorsAndTTL(t *testing.T) {
	var calls atomic.Int32
	var status atomic.Int32
	status.Store(http.StatusOK)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/api/v3/ticker/price" || r.URL.Query().Get("symbol") != "BTCUSDT" || r.Header.Get("X-MBX-APIKEY") != "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		<-release
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(`{"symbol":"BTCUSDT","price":"100.5"}`))
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	bv, _ := binance.New(binance.Options{Credentials: noCreds})
	ps := policy.NewPriceSource(bv, base, srv.Client().Transport, 50*time.Millisecond)
	ctx := context.Background()

	// Concurrent readers share one request.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if p, err := ps.ReferencePrice(ctx, "btcusdt"); err != nil || p.String() != "100.5" {
				t.Errorf("price %v, %v", p, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d requests for 10 concurrent readers, want 1", calls.Load())
	}
	time.Sleep(60 * time.Millisecond) // past the TTL
	status.Store(http.StatusServiceUnavailable)
	if _, err := ps.ReferencePrice(ctx, "BTCUSDT"); err == nil {
		t.Fatal("a 503 answer gave a price")
	}
	if _, err := ps.ReferencePrice(ctx, "BTCUSDT"); err == nil || calls.Load() != 3 {
		t.Fatalf("errors must not be cached: %v, %d calls", err, calls.Load())
	}
}
