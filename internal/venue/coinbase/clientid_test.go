package coinbase

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

var idRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewClientOrderID(t *testing.T) {
	v := mustVenue(t, "k", "p")
	ff := [16]byte{}
	for i := range ff {
		ff[i] = 0xff
	}
	for _, s := range [][16]byte{{}, ff, {1, 2, 3}} {
		if id := v.NewClientOrderID(s); !idRE.MatchString(id) || id != v.NewClientOrderID(s) {
			t.Fatalf("id %q", id)
		}
	}
	if v.NewClientOrderID([16]byte{1}) == v.NewClientOrderID([16]byte{2}) {
		t.Fatal("different seeds, same id")
	}
}

func TestSetClientOrderID(t *testing.T) {
	v := mustVenue(t, "k", "p")
	venuetest.RunSetClientOrderIDJSON(t, v, "id1", []venuetest.JSONCase{
		{"added", "/api/v3/brokerage/orders", `{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"10","client_order_id":"nested"}}}`,
			`{"product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"10","client_order_id":"nested"}},"client_order_id":"id1"}`, false},
		{"twice in any case refused", "/api/v3/brokerage/orders", `{"Client_Order_ID":"a","product_id":"BTC-USD","side":"SELL","order_configuration":{"market_market_ioc":{"base_size":"1"}},"client_order_id":"b"}`, "", true},
		{"other case refused", "/api/v3/brokerage/orders", `{"Client_Order_ID":"a","product_id":"BTC-USD","side":"SELL","order_configuration":{"market_market_ioc":{"base_size":"1"}}}`, "", true},
		{"not an order", "/api/v3/brokerage/orders/batch_cancel", `{}`, "", true},
		{"not an object", "/api/v3/brokerage/orders", `"x"`, "", true},
	})
}

// FuzzSetClientOrderID: for any body Normalize reads as an order,
// SetClientOrderID gives one Normalize reads with the new id and the same
// other fields.
func FuzzSetClientOrderID(f *testing.F) {
	f.Add(`{"product_id":"BTC-USD","side":"BUY","client_order_id":"a","CLIENT_ORDER_ID":"b","order_configuration":{"limit_limit_gtc":{"base_size":"1","limit_price":"2"}}}`, []byte("s"))
	f.Add(`{"product_id":"BTC-USD","side":"SELL","order_configuration":{"market_market_ioc":{"quote_size":5}}}`, []byte{})
	f.Add(`{}`, []byte{1})
	f.Fuzz(func(t *testing.T, body string, seed []byte) {
		v := mustVenue(t, "k", "p")
		r := &venue.Request{Method: "POST", Path: "/api/v3/brokerage/orders", Body: []byte(body)}
		venuetest.SetClientOrderIDRoundTrip(t, v, r, seed)
	})
}

// TestLookupAgainstSandbox: an order placed with a keystile client order
// id is found (also once cancelled) with the venue order id of the
// placement answer; an unknown id is definitively not found; the sandbox
// received exactly one order.
func TestLookupAgainstSandbox(t *testing.T) {
	s, err := sandbox.Start(t.Context(), sandbox.Options{Venues: []string{sandbox.VenueCoinbase}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vi := s.Info().Venues[sandbox.VenueCoinbase]
	c := vi.Credentials
	v := mustVenue(t, c["key_name"], c["private_key"])
	place := &venue.Request{Method: "POST", Path: "/api/v3/brokerage/orders", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"30000"}}}`)}
	id := v.NewClientOrderID([16]byte{4, 2})
	if err := v.SetClientOrderID(place, id); err != nil {
		t.Fatal(err)
	}
	o, _ := v.Normalize(place)
	status, body := venuetest.Send(t, v, vi.BaseURL, place)
	venueID := v.VenueOrderID(status, body)
	if venueID == "" {
		t.Fatalf("place: %d %s", status, body)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, id); err != nil || !found || got != venueID {
		t.Fatalf("open: %q %v %v, want %q", got, found, err, venueID)
	}
	cancel := &venue.Request{Method: "POST", Path: "/api/v3/brokerage/orders/batch_cancel", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"order_ids":["` + venueID + `"]}`)}
	if status, body := venuetest.Send(t, v, vi.BaseURL, cancel); status != 200 {
		t.Fatalf("cancel: %d %s", status, body)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, id); err != nil || !found || got != venueID {
		t.Fatalf("cancelled: %q %v %v, want %q", got, found, err, venueID)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, v.NewClientOrderID([16]byte{7})); err != nil || found || got != "" {
		t.Fatalf("unknown id: %q %v %v", got, found, err)
	}
	st := s.Stats(sandbox.VenueCoinbase)
	if st.Orders != 1 || st.AuthFailures != 0 || st.Operations["orders.list"] != 3 {
		t.Fatalf("stats %+v", st)
	}
	for _, bad := range []string{`{"orders":[{"order_id":"1","client_order_id":"x"}],"has_next":true}`, `{"orders":[]}`, `{"error":"UNAUTHENTICATED"}`, `{`} {
		if _, _, err := v.Found(id, 200, []byte(bad)); err == nil {
			t.Fatalf("Found decided on %s", bad)
		}
	}
	if v.VenueOrderID(200, []byte(`{"success":false,"error_response":{"error":"INSUFFICIENT_FUND"},"success_response":{"order_id":"1"}}`)) != "" {
		t.Fatal("VenueOrderID of a refusal")
	}
}

func mustVenue(t *testing.T, name, key string) *Venue {
	t.Helper()
	v, err := New(Options{Credentials: creds(name, key)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
