package betfair_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/betfair"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func betfairSetup(t *testing.T) *venuetest.CancelAllSetup {
	return venuetest.StartCancelAll(t, sandbox.VenueBetfair, func(info sandbox.VenueInfo) (venuetest.Canceller, error) {
		return betfair.New(betfair.Options{Credentials: venuetest.MapCredentials(info.Credentials), Login: "login", IdentityURL: info.IdentityURL})
	})
}

func betfairOrders(n int) []*venue.Request {
	var out []*venue.Request
	for i := range n {
		out = append(out, &venue.Request{Method: http.MethodPost, Path: "/exchange/betting/rest/v1.0/placeOrders/",
			Header: http.Header{"Content-Type": {"application/json"}},
			Body: fmt.Appendf(nil, `{"marketId":"1.%d","instructions":[{"selectionId":47972,"handicap":0,"side":"BACK","orderType":"LIMIT",`+
				`"limitOrder":{"size":2,"price":2.%d,"persistenceType":"LAPSE"}}]}`, 100+i%3, i)})
	}
	return out
}

func betfairOK(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"status":"SUCCESS"`))
}

// TestCancelAll: listCurrentOrders, cancelOrders without market or
// instructions (every unmatched bet on every market), listCurrentOrders.
func TestCancelAll(t *testing.T) {
	c := betfairSetup(t)
	c.Place(t, betfairOrders(5), betfairOK)
	res := c.CheckCancelAll(t)
	if res.Requests != 3 {
		t.Errorf("requests = %d, want 3", res.Requests)
	}
}

func TestCancelAllFailures(t *testing.T) {
	t.Run("venue down", func(t *testing.T) {
		c := betfairSetup(t)
		c.Place(t, betfairOrders(2), betfairOK)
		c.CheckVenueDown(t)
	})
	t.Run("cancelOrders answered 503, then retried", func(t *testing.T) {
		c := betfairSetup(t)
		c.Place(t, betfairOrders(2), betfairOK)
		c.CheckFault(t, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, PathPrefix: "/exchange/betting/rest/v1.0/cancelOrders"})
	})
}

func FuzzCancelAllAnswer(f *testing.F) {
	for _, s := range []string{`{"currentOrders":[{"betId":"1","status":"EXECUTABLE"}],"moreAvailable":true}`, `{"status":"SUCCESS","instructionReports":[{"status":"SUCCESS","instruction":{"betId":"1"}}]}`, `{"detail":{"APINGException":{"errorCode":"NO_SESSION"}}}`, `[]`, `{}`, `null`, ``} {
		f.Add(200, []byte(s))
	}
	f.Add(400, []byte(`{}`))
	v, err := betfair.New(betfair.Options{Credentials: venuetest.MapCredentials(map[string]string{"app_key": "a", "username": "u", "password": "p"}), Login: "login", IdentityURL: "http://127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		venuetest.FuzzCancelAll(t, v, status, body)
	})
}
