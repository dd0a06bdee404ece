package bybit_test

import (
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue/bybit"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func newTickerVenue(t testing.TB) *bybit.Venue {
	t.Helper()
	v, err := bybit.New(bybit.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public ticker, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	venuetest.Ticker(t, sandbox.VenueBybit, newTickerVenue(t), "BTCUSDT", "43250.10")
}

func TestParseTickerRefuses(t *testing.T) {
	venuetest.ParseTickerRefuses(t, newTickerVenue(t), "BTCUSDT", `{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT","lastPrice":"43250.10"}]}}`,
		[]string{"", "null", "[]", "{", `{}`, `{"retCode":10001,"result":{"list":[]}}`, `{"result":{"list":[{"symbol":"BTCUSDT","lastPrice":"1"}]}}`, `{"retCode":0,"result":{"list":[{"symbol":"ETHUSDT","lastPrice":"1"}]}}`, `{"retCode":0,"result":{"list":[]}}`})
}

func FuzzParseTicker(f *testing.F) {
	v := newTickerVenue(f)
	f.Add("BTCUSDT", []byte(`{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT","lastPrice":"43250.10"}]}}`))
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, inst string, body []byte) { venuetest.FuzzTicker(t, v, inst, body) })
}
