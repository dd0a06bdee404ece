package kraken_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
)

// noCredentials fails every use: reading a public ticker never needs one.
func noCredentials(context.Context, func(venue.Credential) error) error {
	return errors.New("the ticker must not open a credential")
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public ticker, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueKraken}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := s.Info().Venues[sandbox.VenueKraken].BaseURL
	v, err := kraken.New(kraken.Options{Credentials: noCredentials})
	if err != nil {
		t.Fatal(err)
	}
	var ref venue.PriceReference = v
	method, path, query := ref.TickerRequest("XBTUSD")
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
	price, err := ref.ParseTicker("XBTUSD", body)
	if err != nil || price != "37500.00000" {
		t.Fatalf("ParseTicker = %q, %v; want 37500.00000", price, err)
	}
	if st := s.Stats(sandbox.VenueKraken); st.AuthFailures != 0 {
		t.Errorf("auth failures: %d", st.AuthFailures)
	}
}

func TestParseTickerRefuses(t *testing.T) {
	v, err := kraken.New(kraken.Options{Credentials: noCredentials})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.ParseTicker("XBTUSD", []byte(`{"error":[],"result":{"XXBTZUSD":{"c":["37500.0","0.1"]}}}`)); err != nil || p == "" {
		t.Fatalf("good body: %q, %v", p, err)
	}
	for _, body := range []string{"", "null", "[]", "{", `{}`, `{"error":["EQuery:Unknown asset pair"]}`, `{"error":[],"result":{}}`, `{"error":[],"result":{"A":{"c":["1"]},"B":{"c":["2"]}}}`, `{"error":[],"result":{"XXBTZUSD":{"c":[]}}}`} {
		if p, err := v.ParseTicker("XBTUSD", []byte(body)); err == nil {
			t.Errorf("ParseTicker(%s) = %q, want an error", body, p)
		}
	}
}

func FuzzParseTicker(f *testing.F) {
	v, err := kraken.New(kraken.Options{Credentials: noCredentials})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("XBTUSD", []byte(`{"error":[],"result":{"XXBTZUSD":{"c":["37500.0","0.1"]}}}`))
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
