package binance_test

import (
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func newTickerVenue(t testing.TB) *binance.Venue {
	t.Helper()
	v, err := binance.New(binance.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public ticker, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	venuetest.Ticker(t, sandbox.VenueBinance, newTickerVenue(t), "BTCUSDT", "37500.00000000")
}

func TestParseTickerRefuses(t *testing.T) {
	venuetest.ParseTickerRefuses(t, newTickerVenue(t), "BTCUSDT", `{"symbol":"BTCUSDT","price":"37500.1"}`,
		[]string{"", "null", "[]", "{", `{}`, `{"symbol":"ETHUSDT","price":"1"}`, `{"symbol":"BTCUSDT"}`, `{"symbol":"BTCUSDT","price":""}`, `{"price":"1"} {}`})
}

func FuzzParseTicker(f *testing.F) {
	v := newTickerVenue(f)
	f.Add("BTCUSDT", []byte(`{"symbol":"BTCUSDT","price":"37500.1"}`))
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, inst string, body []byte) { venuetest.FuzzTicker(t, v, inst, body) })
}
