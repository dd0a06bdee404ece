package bybit_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/bybit"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func bybitSetup(t *testing.T) *venuetest.CancelAllSetup {
	return venuetest.StartCancelAll(t, sandbox.VenueBybit, func(info sandbox.VenueInfo) (venuetest.Canceller, error) {
		return bybit.New(bybit.Options{Credentials: venuetest.MapCredentials(info.Credentials)})
	})
}

// bybitOrders are spot orders and linear ones settled in USDT and USDC.
func bybitOrders(spot, linear int) []*venue.Request {
	var out []*venue.Request
	add := func(category, symbol string, i int) {
		out = append(out, &venue.Request{Method: http.MethodPost, Path: "/v5/order/create",
			Header: http.Header{"Content-Type": {"application/json"}},
			Body: fmt.Appendf(nil, `{"category":%q,"symbol":%q,"side":"Buy","orderType":"Limit","qty":"0.1","price":"%d"}`,
				category, symbol, 100+i)})
	}
	for i := range spot {
		add("spot", "BTCUSDT", i)
	}
	for i := range linear {
		add("linear", []string{"BTCUSDT", "ETHPERP"}[i%2], i)
	}
	return out
}

func bybitOK(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"retCode":0`))
}

// TestCancelAll: 60 spot orders (two realtime pages of 50) and linear
// orders settled in USDT and in USDC, each group cancelled with
// cancel-all under the parameters Bybit requires for it.
func TestCancelAll(t *testing.T) {
	c := bybitSetup(t)
	c.Place(t, bybitOrders(2, 4), bybitOK)
	c.Seed(t, "bybit-", 58, func(i int) sandbox.Order {
		return sandbox.Order{Instrument: "ETHUSDT", Side: "buy", Price: "100", Size: "1", Category: "spot"}
	})
	c.CheckCancelAll(t)
	if ops := c.Sandbox.Stats(sandbox.VenueBybit).Operations; ops["order.cancel_all"] != 3 {
		t.Errorf("emulator operations = %v (want one each: spot, linear USDT, linear USDC)", ops)
	}
}

func TestCancelAllFailures(t *testing.T) {
	t.Run("venue down", func(t *testing.T) {
		c := bybitSetup(t)
		c.Place(t, bybitOrders(2, 0), bybitOK)
		c.CheckVenueDown(t)
	})
	t.Run("cancel-all answered 503, then retried", func(t *testing.T) {
		c := bybitSetup(t)
		c.Place(t, bybitOrders(3, 2), bybitOK)
		time.Sleep(time.Second) // Bybit's order rate: 10 per second, cancels included
		c.CheckFault(t, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, Count: 3, PathPrefix: "/v5/order/cancel-all"})
	})
}

func FuzzCancelAllAnswer(f *testing.F) {
	for _, s := range []string{`{"retCode":0,"result":{"list":[{"orderId":"1"}],"nextPageCursor":"2"}}`, `{"retCode":0,"result":{"list":[],"success":"1"}}`, `{"retCode":10006,"retMsg":"x"}`, `[]`, `{}`, `null`, ``} {
		f.Add(200, []byte(s))
	}
	f.Add(400, []byte(`{}`))
	v, err := bybit.New(bybit.Options{Credentials: venuetest.MapCredentials(map[string]string{"api_key": "k", "secret": "s"})})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		venuetest.FuzzCancelAll(t, v, status, body)
	})
}
