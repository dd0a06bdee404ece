package okx_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/okx"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func okxSetup(t *testing.T) *venuetest.CancelAllSetup {
	return venuetest.StartCancelAll(t, sandbox.VenueOKX, func(info sandbox.VenueInfo) (venuetest.Canceller, error) {
		return okx.New(okx.Options{Credentials: venuetest.MapCredentials(info.Credentials)})
	})
}

func okxOrders(n int) []*venue.Request {
	var out []*venue.Request
	for i := range n {
		inst := []string{"BTC-USDT", "ETH-USDT"}[i%2]
		out = append(out, &venue.Request{Method: http.MethodPost, Path: "/api/v5/trade/order",
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   fmt.Appendf(nil, `{"instId":%q,"tdMode":"cash","side":"buy","ordType":"limit","px":"%d","sz":"1"}`, inst, 100+i)})
	}
	return out
}

func okxOK(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"code":"0"`))
}

// TestCancelAll: 130 orders need two orders-pending pages (100 + 30) and
// seven cancel-batch-orders calls (20 each); a second listing confirms.
func TestCancelAll(t *testing.T) {
	c := okxSetup(t)
	c.Place(t, okxOrders(4), okxOK)
	c.Seed(t, "", 126, func(i int) sandbox.Order {
		return sandbox.Order{Instrument: "SOL-USDT", Side: "sell", Price: fmt.Sprint(200 + i), Size: "1"}
	})
	res := c.CheckCancelAll(t)
	if want := 2 + 7 + 1; res.Requests != want {
		t.Errorf("requests = %d, want %d", res.Requests, want)
	}
	if ops := c.Sandbox.Stats(sandbox.VenueOKX).Operations; ops["trade.cancel_batch"] != 7 || ops["trade.pending"] != 3 {
		t.Errorf("emulator operations = %v", ops)
	}
}

func TestCancelAllFailures(t *testing.T) {
	t.Run("venue down", func(t *testing.T) {
		c := okxSetup(t)
		c.Place(t, okxOrders(2), okxOK)
		c.CheckVenueDown(t)
	})
	t.Run("one batch answered 503, then retried", func(t *testing.T) {
		c := okxSetup(t)
		c.Place(t, okxOrders(25), okxOK)
		c.CheckFault(t, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, PathPrefix: "/api/v5/trade/cancel-batch-orders"})
	})
}

func FuzzCancelAllAnswer(f *testing.F) {
	for _, s := range []string{`{"code":"0","data":[{"instId":"BTC-USDT","ordId":"1"}]}`, `{"code":"2","data":[{"ordId":"1","sCode":"0"},{"ordId":"2","sCode":"51400"}]}`, `{"code":"50011"}`, `[]`, `{}`, `null`, ``} {
		f.Add(200, []byte(s))
	}
	f.Add(400, []byte(`{}`))
	v, err := okx.New(okx.Options{Credentials: venuetest.MapCredentials(map[string]string{"api_key": "k", "secret": "s", "passphrase": "p"})})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		venuetest.FuzzCancelAll(t, v, status, body)
	})
}
