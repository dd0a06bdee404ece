package binance_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
)

// noCredentials fails every use: reading a public ticker never needs one.
func noCredentials(context.Context, func(venue.Credential) error) error {
	return errors.New("the ticker must not open a credential")
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public ticker, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueBinance}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := s.Info().Venues[sandbox.VenueBinance].BaseURL
	v, err := binance.New(binance.Options{Credentials: noCredentials})
	if err != nil {
		t.Fatal(err)
	}
	var ref venue.PriceReference = v
	method, path, query := ref.TickerRequest("BTCUSDT")
	req, err := http.NewRequest(method, base+path+"?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	price, err := ref.ParseTicker("BTCUSDT", body)
	if err != nil || price != "37500.00000000" {
		t.Fatalf("ParseTicker = %q, %v; want 37500.00000000", price, err)
	}
	if st := s.Stats(sandbox.VenueBinance); st.AuthFailures != 0 {
		t.Errorf("auth failures: %d", st.AuthFailures)
	}
}

func TestParseTickerRefuses(t *testing.T) {
	v, err := binance.New(binance.Options{Credentials: noCredentials})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.ParseTicker("BTCUSDT", []byte(`{"symbol":"BTCUSDT","price":"37500.1"}`)); err != nil || p == "" {
		t.Fatalf("good body: %q, %v", p, err)
	}
	for _, body := range []string{"", "null", "[]", "{", `{}`, `{"symbol":"ETHUSDT","price":"1"}`, `{"symbol":"BTCUSDT"}`, `{"symbol":"BTCUSDT","price":""}`, `{"price":"1"} {}`} {
		if p, err := v.ParseTicker("BTCUSDT", []byte(body)); err == nil {
			t.Errorf("ParseTicker(%s) = %q, want an error", body, p)
		}
	}
}

func FuzzParseTicker(f *testing.F) {
	v, err := binance.New(binance.Options{Credentials: noCredentials})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("BTCUSDT", []byte(`{"symbol":"BTCUSDT","price":"37500.1"}`))
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, inst string, body []byte) {
		p, err := v.ParseTicker(inst, body)
		if err == nil && p == "" {
			t.Fatal("empty price without an error")
		}
		m, path, q := v.TickerRequest(inst)
		if m != http.MethodGet || path == "" || len(q) == 0 {
			t.Fatalf("TickerRequest(%q) = %q %q %q", inst, m, path, q)
		}
	})
}
