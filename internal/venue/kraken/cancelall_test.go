package kraken_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func krakenSetup(t *testing.T) *venuetest.CancelAllSetup {
	return venuetest.StartCancelAll(t, sandbox.VenueKraken, func(info sandbox.VenueInfo) (venuetest.Canceller, error) {
		return kraken.New(kraken.Options{Credentials: venuetest.MapCredentials(info.Credentials), Tier: "none"})
	})
}

func krakenOrders(n int) []*venue.Request {
	var out []*venue.Request
	for i := range n {
		out = append(out, &venue.Request{Method: http.MethodPost, Path: "/0/private/AddOrder",
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			Body:   fmt.Appendf(nil, "pair=XBTUSD&type=buy&ordertype=limit&price=%d&volume=0.01", 20000+i)})
	}
	return out
}

func krakenOK(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"error":[]`))
}

// TestCancelAll: OpenOrders, CancelAll, OpenOrders; the orders gone are
// reported by id although CancelAll answers only a count.
func TestCancelAll(t *testing.T) {
	c := krakenSetup(t)
	c.Place(t, krakenOrders(5), krakenOK)
	res := c.CheckCancelAll(t)
	if res.Requests != 3 {
		t.Errorf("requests = %d, want 3", res.Requests)
	}
	if ops := c.Sandbox.Stats(sandbox.VenueKraken).Operations; ops["CancelAll"] != 1 {
		t.Errorf("emulator operations = %v", ops)
	}
}

func TestCancelAllFailures(t *testing.T) {
	t.Run("venue down", func(t *testing.T) {
		c := krakenSetup(t)
		c.Place(t, krakenOrders(2), krakenOK)
		c.CheckVenueDown(t)
	})
	t.Run("CancelAll answered 502, then retried", func(t *testing.T) {
		c := krakenSetup(t)
		c.Place(t, krakenOrders(3), krakenOK)
		c.CheckFault(t, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 502, PathPrefix: "/0/private/CancelAll"})
	})
}

func FuzzCancelAllAnswer(f *testing.F) {
	for _, s := range []string{`{"error":[],"result":{"open":{"O1":{}}}}`, `{"error":[],"result":{"count":2}}`, `{"error":["EGeneral:x"]}`, `[]`, `{}`, `null`, ``} {
		f.Add(200, []byte(s))
	}
	f.Add(400, []byte(`{}`))
	v, err := kraken.New(kraken.Options{Credentials: venuetest.MapCredentials(map[string]string{"api_key": "k", "secret": "c2VjcmV0"})})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		venuetest.FuzzCancelAll(t, v, status, body)
	})
}
