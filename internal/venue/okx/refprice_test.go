package okx_test

import (
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue/okx"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func newTickerVenue(t testing.TB) *okx.Venue {
	t.Helper()
	v, err := okx.New(okx.Options{Credentials: venuetest.NoCredentials})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTickerAgainstSandbox reads the reference price from the emulator's
// public ticker, unsigned.
func TestTickerAgainstSandbox(t *testing.T) {
	venuetest.Ticker(t, sandbox.VenueOKX, newTickerVenue(t), "BTC-USDT", "43250.1")
}

func TestParseTickerRefuses(t *testing.T) {
	venuetest.ParseTickerRefuses(t, newTickerVenue(t), "BTC-USDT", `{"code":"0","msg":"","data":[{"instId":"BTC-USDT","last":"43250.1"}]}`,
		[]string{"", "null", "[]", "{", `{}`, `{"code":"51000","data":[]}`, `{"code":"0","data":[]}`, `{"code":"0","data":[{"instId":"ETH-USDT","last":"1"}]}`, `{"code":"0","data":[{"instId":"BTC-USDT","last":""}]}`, `{"code":"0","data":[{"last":"1"},{"last":"2"}]}`})
}

func FuzzParseTicker(f *testing.F) {
	v := newTickerVenue(f)
	f.Add("BTC-USDT", []byte(`{"code":"0","msg":"","data":[{"instId":"BTC-USDT","last":"43250.1"}]}`))
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, inst string, body []byte) { venuetest.FuzzTicker(t, v, inst, body) })
}
