package coinbase_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/coinbase"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func coinbaseSetup(t *testing.T) *venuetest.CancelAllSetup {
	return venuetest.StartCancelAll(t, sandbox.VenueCoinbase, func(info sandbox.VenueInfo) (venuetest.Canceller, error) {
		return coinbase.New(coinbase.Options{Credentials: venuetest.MapCredentials(info.Credentials)})
	})
}

func coinbaseOrders(n int) []*venue.Request {
	var out []*venue.Request
	for i := range n {
		out = append(out, &venue.Request{Method: http.MethodPost, Path: "/api/v3/brokerage/orders",
			Header: http.Header{"Content-Type": {"application/json"}},
			Body: fmt.Appendf(nil, `{"client_order_id":"ks-%d","product_id":"BTC-USD","side":"BUY",`+
				`"order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"%d"}}}`, i, 100+i)})
	}
	return out
}

func coinbaseOK(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"success":true`))
}

// TestCancelAll: 260 open orders span two List Orders pages (250 + 10) and
// three batch_cancel calls (100 ids each at most).
func TestCancelAll(t *testing.T) {
	c := coinbaseSetup(t)
	c.Place(t, coinbaseOrders(5), coinbaseOK)
	c.Seed(t, "cb-", 255, func(i int) sandbox.Order {
		return sandbox.Order{ClientOrderID: fmt.Sprintf("seed-%d", i), Instrument: "ETH-USD", Side: "sell", Price: "2000", Size: "0.1"}
	})
	res := c.CheckCancelAll(t)
	if want := 2 + 3 + 1; res.Requests != want {
		t.Errorf("requests = %d, want %d", res.Requests, want)
	}
}

func TestCancelAllFailures(t *testing.T) {
	t.Run("venue down", func(t *testing.T) {
		c := coinbaseSetup(t)
		c.Place(t, coinbaseOrders(2), coinbaseOK)
		c.CheckVenueDown(t)
	})
	t.Run("batch_cancel answered 500, then retried", func(t *testing.T) {
		c := coinbaseSetup(t)
		c.Place(t, coinbaseOrders(3), coinbaseOK)
		c.CheckFault(t, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 500, PathPrefix: "/api/v3/brokerage/orders/batch_cancel"})
	})
}

func FuzzCancelAllAnswer(f *testing.F) {
	for _, s := range []string{`{"orders":[{"order_id":"a","status":"OPEN"}],"has_next":true,"cursor":"1"}`, `{"results":[{"success":true,"order_id":"a"}]}`, `{"orders":[],"has_next":false}`, `[]`, `{}`, `null`, ``} {
		f.Add(200, []byte(s))
	}
	f.Add(400, []byte(`{}`))
	v, err := coinbase.New(coinbase.Options{Credentials: venuetest.MapCredentials(map[string]string{"key_name": "k", "private_key": "x"})})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		venuetest.FuzzCancelAll(t, v, status, body)
	})
}
