package kraken_test

import (
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func newTickerVenue(t testing.TB) *kraken.Venue {
	t.Helper()
	v, err := kraken.New(kraken.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public ticker, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	venuetest.Ticker(t, sandbox.VenueKraken, newTickerVenue(t), "XBTUSD", "37500.00000")
}

func TestParseTickerRefuses(t *testing.T) {
	venuetest.ParseTickerRefuses(t, newTickerVenue(t), "XBTUSD", `{"error":[],"result":{"XXBTZUSD":{"c":["37500.0","0.1"]}}}`,
		[]string{"", "null", "[]", "{", `{}`, `{"error":["EQuery:Unknown asset pair"]}`, `{"error":[],"result":{}}`, `{"error":[],"result":{"A":{"c":["1"]},"B":{"c":["2"]}}}`, `{"error":[],"result":{"XXBTZUSD":{"c":[]}}}`})
}

func FuzzParseTicker(f *testing.F) {
	v := newTickerVenue(f)
	f.Add("XBTUSD", []byte(`{"error":[],"result":{"XXBTZUSD":{"c":["37500.0","0.1"]}}}`))
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, inst string, body []byte) { venuetest.FuzzTicker(t, v, inst, body) })
}
