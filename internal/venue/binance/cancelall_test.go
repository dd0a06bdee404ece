package binance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

func binanceSetup(t *testing.T) *venuetest.CancelAllSetup {
	return venuetest.StartCancelAll(t, sandbox.VenueBinance, func(info sandbox.VenueInfo) (venuetest.Canceller, error) {
		return binance.New(binance.Options{Credentials: venuetest.MapCredentials(info.Credentials), ClockSync: -1})
	})
}

// binanceOrders are limit orders on several symbols.
func binanceOrders(n int) []*venue.Request {
	var out []*venue.Request
	for i := range n {
		sym := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT"}[i%3]
		out = append(out, &venue.Request{Method: http.MethodPost, Path: "/api/v3/order", Header: http.Header{},
			RawQuery: fmt.Sprintf("symbol=%s&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=%d&newClientOrderId=ks-%d", sym, 100+i, i)})
	}
	return out
}

func binanceOK(status int, _ []byte) bool { return status == http.StatusOK }

// TestCancelAll: orders on three symbols are cancelled with one DELETE
// /api/v3/openOrders per symbol, after one listing, and checked by a
// second listing: nothing stays open at the emulator.
func TestCancelAll(t *testing.T) {
	c := binanceSetup(t)
	c.Place(t, binanceOrders(7), binanceOK)
	res := c.CheckCancelAll(t)
	if res.Requests != 2+3 { // list, 3 symbols, list
		t.Errorf("requests = %d, want 5", res.Requests)
	}
	if ops := c.Sandbox.Stats(sandbox.VenueBinance).Operations; ops["openOrders.cancel"] != 3 || ops["openOrders"] != 2 {
		t.Errorf("emulator operations = %v", ops)
	}
	// Nothing open: one listing, no cancel, nothing reported.
	res = c.CheckCancelAll(t)
	if res.Requests != 2 || len(res.Cancelled) != 0 {
		t.Errorf("second pass = %+v", res)
	}
}

func TestCancelAllFailures(t *testing.T) {
	t.Run("venue down", func(t *testing.T) {
		c := binanceSetup(t)
		c.Place(t, binanceOrders(2), binanceOK)
		c.CheckVenueDown(t)
	})
	t.Run("listing answered 503, then retried", func(t *testing.T) {
		c := binanceSetup(t)
		c.Place(t, binanceOrders(4), binanceOK)
		c.CheckFault(t, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, Count: 1, PathPrefix: "/api/v3/openOrders"})
	})
}

// TestCancelAllAnswers reads the documented answer shapes: cancelled
// orders, order lists with their reports, -2011 for a symbol whose orders
// went meanwhile.
func TestCancelAllAnswers(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: venuetest.MapCredentials(map[string]string{"api_key": "k", "secret": "s"}), ClockSync: -1})
	list := `[{"symbol":"BTCUSDT","orderId":1},{"symbol":"BTCUSDT","orderId":2},{"symbol":"LTCBTC","orderId":3}]`
	tests := []struct {
		name      string
		del       map[string]func() (int, string)
		after     string
		cancelled []string
		failed    int
	}{
		{"orders and an order list", map[string]func() (int, string){
			"BTCUSDT": func() (int, string) {
				return 200, `[{"symbol":"BTCUSDT","orderId":1,"orderListId":-1,"status":"CANCELED"},` +
					`{"orderListId":7,"contingencyType":"OCO","orderReports":[{"orderId":2,"status":"CANCELED"},{"orderId":9,"status":"CANCELED"}]}]`
			},
			"LTCBTC": func() (int, string) { return 200, `[{"orderId":3,"orderListId":-1,"status":"CANCELED"}]` },
		}, `[]`, []string{"1", "2", "9", "3"}, 0},
		{"gone meanwhile", map[string]func() (int, string){
			"BTCUSDT": func() (int, string) { return 400, `{"code":-2011,"msg":"Unknown order sent."}` },
			"LTCBTC":  func() (int, string) { return 200, `[{"orderId":3,"orderListId":-1,"status":"CANCELED"}]` },
		}, `[]`, []string{"3"}, 0},
		{"refused and still open", map[string]func() (int, string){
			"BTCUSDT": func() (int, string) {
				return 400, `{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}`
			},
			"LTCBTC": func() (int, string) { return 200, `[{"orderId":3,"orderListId":-1,"status":"CANCELED"}]` },
		}, `[{"symbol":"BTCUSDT","orderId":1},{"symbol":"BTCUSDT","orderId":2}]`, []string{"3"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lists := 0
			send := func(_ context.Context, r *venue.Request) (int, []byte, error) {
				if r.Method == http.MethodGet {
					lists++
					if lists == 1 {
						return 200, []byte(list), nil
					}
					return 200, []byte(tt.after), nil
				}
				q, _ := url.ParseQuery(r.RawQuery)
				st, b := tt.del[q.Get("symbol")]()
				return st, []byte(b), nil
			}
			res, err := v.CancelAll(t.Context(), send)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Cancelled, tt.cancelled) || len(res.Failed) != tt.failed {
				b, _ := json.Marshal(res)
				t.Fatalf("result %s", b)
			}
		})
	}
}

func FuzzCancelAllAnswer(f *testing.F) {
	for _, s := range []string{`[{"symbol":"BTCUSDT","orderId":1}]`, `[{"orderId":1,"status":"CANCELED"},{"orderListId":2,"orderReports":[{"orderId":3,"status":"CANCELED"}]}]`, `{"code":-2011,"msg":"x"}`, `[]`, `{}`, `null`, ``} {
		f.Add(200, []byte(s))
	}
	f.Add(400, []byte(`{}`))
	v, err := binance.New(binance.Options{Credentials: venuetest.MapCredentials(map[string]string{"api_key": "k", "secret": "s"}), ClockSync: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		venuetest.FuzzCancelAll(t, v, status, body)
	})
}
