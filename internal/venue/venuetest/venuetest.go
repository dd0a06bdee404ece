// Package venuetest holds checks shared by the venue packages' tests: each
// runs a venue implementation against its sandbox emulator over real HTTP
// on loopback. It is imported by tests only.
package venuetest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
)

// NoCredentials fails every use: for venue code that must not open a
// credential (public market data).
func NoCredentials(context.Context, func(venue.Credential) error) error {
	return errors.New("venuetest: this request must not open a credential")
}

// Ticker reads instrument's reference price from the sandbox emulator of
// sandboxVenue through ref's unsigned ticker request, and checks it is
// want and that the emulator saw no authentication failure.
func Ticker(t *testing.T, sandboxVenue string, ref venue.PriceReference, instrument, want string) {
	t.Helper()
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandboxVenue}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	method, path, query := ref.TickerRequest(instrument)
	target := s.Info().Venues[sandboxVenue].BaseURL + path
	if query != "" {
		target += "?" + query
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ticker %s: status %d: %s", target, resp.StatusCode, body)
	}
	price, err := ref.ParseTicker(instrument, body)
	if err != nil || price != want {
		t.Fatalf("ParseTicker = %q, %v; want %s", price, err, want)
	}
	if st := s.Stats(sandboxVenue); st.AuthFailures != 0 {
		t.Errorf("auth failures: %d", st.AuthFailures)
	}
}

// ParseTickerRefuses checks that ref parses good and refuses every body
// in bad for instrument.
func ParseTickerRefuses(t *testing.T, ref venue.PriceReference, instrument, good string, bad []string) {
	t.Helper()
	if p, err := ref.ParseTicker(instrument, []byte(good)); err != nil || p == "" {
		t.Fatalf("good body: %q, %v", p, err)
	}
	for _, body := range bad {
		if p, err := ref.ParseTicker(instrument, []byte(body)); err == nil {
			t.Errorf("ParseTicker(%s) = %q, want an error", body, p)
		}
	}
}

// FuzzTicker is the body of a FuzzParseTicker target: a price comes with
// no error or an error with no price, and the ticker request is a GET with
// a path and a query.
func FuzzTicker(t *testing.T, ref venue.PriceReference, instrument string, body []byte) {
	p, err := ref.ParseTicker(instrument, body)
	if err == nil && p == "" {
		t.Fatal("empty price without an error")
	}
	m, path, q := ref.TickerRequest(instrument)
	if m != http.MethodGet || path == "" || q == "" {
		t.Fatalf("TickerRequest(%q) = %q %q %q", instrument, m, path, q)
	}
}
