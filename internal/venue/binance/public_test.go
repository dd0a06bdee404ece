package binance_test

import (
	"testing"

	"github.com/keystile/keystile/internal/venue/venuetest"
)

func TestPublicReadsUnsigned(t *testing.T) {
	v := newTickerVenue(t)
	sdk := map[string]string{"X-MBX-APIKEY": "kst_test_fromSDK"}
	for _, tc := range []struct{ name, public, private string }{
		{"ticker", "https://api.binance.com/api/v3/ticker/price?symbol=BTCUSDT&timestamp=1&signature=abcd&recvWindow=5000", "https://api.binance.com/api/v3/account"},
		{"exchange info", "https://api.binance.com/api/v3/exchangeInfo", "https://api.binance.com/api/v3/openOrders"},
		{"historical trades need the key", "https://api.binance.com/api/v3/depth?symbol=BTCUSDT", "https://api.binance.com/api/v3/historicalTrades?symbol=BTCUSDT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			venuetest.PublicUnsigned(t, v, tc.public, tc.private, sdk, "signature", "timestamp", "recvWindow")
		})
	}
}
