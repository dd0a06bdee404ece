package okx_test

import (
	"testing"

	"github.com/keystile/keystile/internal/venue/venuetest"
)

func TestPublicReadsUnsigned(t *testing.T) {
	v := newTickerVenue(t)
	sdk := map[string]string{"OK-ACCESS-KEY": "kst_test_fromSDK", "OK-ACCESS-SIGN": "c2ln", "OK-ACCESS-TIMESTAMP": "2020-01-01T00:00:00.000Z", "OK-ACCESS-PASSPHRASE": "x"}
	venuetest.PublicUnsigned(t, v, "https://www.okx.com/api/v5/market/ticker?instId=BTC-USDT", "https://www.okx.com/api/v5/account/balance", sdk)
	venuetest.PublicUnsigned(t, v, "https://www.okx.com/api/v5/public/instruments?instType=SPOT", "https://www.okx.com/api/v5/trade/orders-pending", sdk)
}
