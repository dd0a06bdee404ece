package bybit_test

import (
	"testing"

	"github.com/keystile/keystile/internal/venue/venuetest"
)

func TestPublicReadsUnsigned(t *testing.T) {
	v := newTickerVenue(t)
	sdk := map[string]string{"X-BAPI-API-KEY": "kst_test_fromSDK", "X-BAPI-SIGN": "abcd", "X-BAPI-TIMESTAMP": "1", "X-BAPI-RECV-WINDOW": "5000"}
	venuetest.PublicUnsigned(t, v, "https://api.bybit.com/v5/market/tickers?category=spot&symbol=BTCUSDT", "https://api.bybit.com/v5/account/wallet-balance?accountType=UNIFIED", sdk)
}
