package coinbase_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func newTickerVenue(t testing.TB) *coinbase.Venue {
	t.Helper()
	v, err := coinbase.New(coinbase.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public product endpoint, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	venuetest.Ticker(t, sandbox.VenueCoinbase, newTickerVenue(t), "BTC-USD", "43250.12")
}

func TestParseTickerRefuses(t *testing.T) {
	venuetest.ParseTickerRefuses(t, newTickerVenue(t), "BTC-USD", `{"product_id":"BTC-USD","price":"43250.12","product_type":"SPOT"}`,
		[]string{"", "null", "[]", "{", `{}`, `{"product_id":"BTC-USD","price":""}`, `{"product_id":"ETH-USD","price":"1"}`, `{"price":7}`})
}

// TestTickerRequestStaysOnProduct: an instrument cannot turn the public
// product request into a request for another path.
func TestTickerRequestStaysOnProduct(t *testing.T) {
	v := newTickerVenue(t)
	for _, inst := range []string{"BTC-USD", "../../v2/accounts", "BTC/USD?x=1", "a%2F.."} {
		m, p, q := v.TickerRequest(inst)
		rest, ok := strings.CutPrefix(p, "/api/v3/brokerage/market/products/")
		if m != http.MethodGet || !ok || strings.ContainsAny(rest, "/?#") || q != "" {
			t.Errorf("TickerRequest(%q) = %s %s ?%s", inst, m, p, q)
		}
	}
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueCoinbase}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(s.Info().Venues[sandbox.VenueCoinbase].BaseURL + "/api/v3/brokerage/market/products/NOPE-USD")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown product: status %d", resp.StatusCode)
	}
}

// FuzzParseTicker: a price comes with no error or an error with no price.
func FuzzParseTicker(f *testing.F) {
	v := newTickerVenue(f)
	f.Add("BTC-USD", []byte(`{"product_id":"BTC-USD","price":"43250.12"}`))
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, inst string, body []byte) {
		p, err := v.ParseTicker(inst, body)
		if err == nil && p == "" {
			t.Fatal("empty price without an error")
		}
	})
}
