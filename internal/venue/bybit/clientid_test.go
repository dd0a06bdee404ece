package bybit

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,36}$`)

func TestNewClientOrderID(t *testing.T) {
	v := newVenue(t, "k", "s", nil, 0)
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
	v := newVenue(t, "k", "s", nil, 0)
	venuetest.RunSetClientOrderIDJSON(t, v, "id1", []venuetest.JSONCase{
		{"added", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1"}`,
			`{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1","orderLinkId":"id1"}`, false},
		{"replaced", "/v5/order/create", `{"orderLinkId":"mine","category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Limit","qty":0.1,"price":"9"}`,
			`{"orderLinkId":"id1","category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Limit","qty":0.1,"price":"9"}`, false},
		{"other case refused", "/v5/order/create", `{"symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1","orderlinkid":"x"}`, "", true},
		{"twice refused", "/v5/order/create", `{"symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1","orderLinkId":"x","orderLinkId":"y"}`, "", true},
		{"not an order", "/v5/order/cancel", `{}`, "", true},
		{"not json", "/v5/order/create", `category=spot`, "", true},
	})
}

// FuzzSetClientOrderID: for any body Normalize reads as an order,
// SetClientOrderID gives one Normalize reads with the new id and the same
// other fields.
func FuzzSetClientOrderID(f *testing.F) {
	f.Add(`{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1","orderLinkId":"a","orderLinkId":"b"}`, []byte("s"))
	f.Add(`{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Limit","qty":1e2,"price":"3","marketUnit":"quoteCoin"}`, []byte{})
	f.Add(`{ }`, []byte{1})
	f.Fuzz(func(t *testing.T, body string, seed []byte) {
		v := newVenue(t, "k", "s", nil, 0)
		r := &venue.Request{Method: "POST", Path: "/v5/order/create", Body: []byte(body)}
		venuetest.SetClientOrderIDRoundTrip(t, v, r, seed)
	})
}

// TestLookupAgainstSandbox: an order placed with a keystile client order
// id is found (also once cancelled) with the venue order id of the
// placement answer; an unknown id is definitively not found; the sandbox
// received exactly one order.
func TestLookupAgainstSandbox(t *testing.T) {
	s, err := sandbox.Start(t.Context(), sandbox.Options{Venues: []string{sandbox.VenueBybit}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vi := s.Info().Venues[sandbox.VenueBybit]
	c := vi.Credentials
	v := newVenue(t, c["api_key"], c["secret"], nil, 0)
	place := &venue.Request{Method: "POST", Path: "/v5/order/create", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.01","price":"30000"}`)}
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
	cancel := &venue.Request{Method: "POST", Path: "/v5/order/cancel", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"category":"spot","symbol":"BTCUSDT","orderId":"` + venueID + `"}`)}
	if status, body := venuetest.Send(t, v, vi.BaseURL, cancel); status != 200 {
		t.Fatalf("cancel: %d %s", status, body)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, id); err != nil || !found || got != venueID {
		t.Fatalf("cancelled: %q %v %v, want %q", got, found, err, venueID)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, v.NewClientOrderID([16]byte{7})); err != nil || found || got != "" {
		t.Fatalf("unknown id: %q %v %v", got, found, err)
	}
	st := s.Stats(sandbox.VenueBybit)
	if st.Orders != 1 || st.AuthFailures != 0 || st.Operations["order.realtime"] != 6 || st.Operations["order.history"] != 3 {
		t.Fatalf("stats %+v", st)
	}
	for _, bad := range []string{`{"retCode":10006,"result":{}}`, `{"retCode":0,"result":{"list":[{"orderId":"1","orderLinkId":"x"}],"nextPageCursor":"c"}}`, `{"result":{"list":[]}}`, `{"retCode":0,"result":{}}`} {
		if _, _, err := v.Found(id, 200, []byte(bad)); err == nil {
			t.Fatalf("Found decided on %s", bad)
		}
	}
	if v.VenueOrderID(200, []byte(`{"retCode":10001,"result":{"orderId":"1"}}`)) != "" {
		t.Fatal("VenueOrderID of a refusal")
	}
}
