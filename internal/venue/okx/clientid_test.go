package okx

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

func TestNewClientOrderID(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
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
	v := newVenue(t, "k", "s", "p", nil)
	venuetest.RunSetClientOrderIDJSON(t, v, "id1", []venuetest.JSONCase{
		{"added", "/api/v5/trade/order", `{"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"}`,
			`{"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1","clOrdId":"id1"}`, false},
		{"replaced", "/api/v5/trade/order", ` {"clOrdId":"a", "instId":"BTC-USDT","side":"buy","ordType":"market","sz":1.50} `,
			` {"clOrdId":"id1", "instId":"BTC-USDT","side":"buy","ordType":"market","sz":1.50} `, false},
		{"twice refused", "/api/v5/trade/order", ` {"clOrdId":"a", "instId":"BTC-USDT","side":"buy","ordType":"market","sz":1.50,"clOrdId" : null} `, "", true},
		{"other case refused", "/api/v5/trade/order", `{"CLORDID":"a","instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"}`, "", true},
		{"escaped name", "/api/v5/trade/order", `{"instId":"BTC-USDT","side":"sell","ordType":"market","sz":"1","clOrd\u0049d":"x"}`,
			`{"instId":"BTC-USDT","side":"sell","ordType":"market","sz":"1","clOrd\u0049d":"id1"}`, false},
		{"not an object", "/api/v5/trade/order", `[{"instId":"BTC-USDT"}]`, "", true},
		{"trailing data", "/api/v5/trade/order", `{"instId":"BTC-USDT"} {}`, "", true},
		{"not an order", "/api/v5/trade/cancel-order", `{"instId":"BTC-USDT"}`, "", true},
	})
}

// FuzzSetClientOrderID: for any body Normalize reads as an order,
// SetClientOrderID gives one Normalize reads with the new id and the same
// other fields.
func FuzzSetClientOrderID(f *testing.F) {
	f.Add(`{"instId":"BTC-USDT","side":"buy","ordType":"limit","px":"1","sz":"2","clOrdId":"x","clOrdId":"y"}`, []byte("s"))
	f.Add(`{"instId":"BTC-USDT","side":"sell","ordType":"market","sz":2e3,"tgtCcy":"quote_ccy"}`, []byte{})
	f.Add(`{}`, []byte{1})
	f.Fuzz(func(t *testing.T, body string, seed []byte) {
		v := newVenue(t, "k", "s", "p", nil)
		r := &venue.Request{Method: "POST", Path: "/api/v5/trade/order", Body: []byte(body)}
		venuetest.SetClientOrderIDRoundTrip(t, v, r, seed)
	})
}

// TestLookupAgainstSandbox: an order placed with a keystile client order
// id is found (also once cancelled) with the venue order id of the
// placement answer; an unknown id is definitively not found; the sandbox
// received exactly one order.
func TestLookupAgainstSandbox(t *testing.T) {
	s, err := sandbox.Start(t.Context(), sandbox.Options{Venues: []string{sandbox.VenueOKX}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vi := s.Info().Venues[sandbox.VenueOKX]
	c := vi.Credentials
	v := newVenue(t, c["api_key"], c["secret"], c["passphrase"], nil)
	place := &venue.Request{Method: "POST", Path: "/api/v5/trade/order", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"30000","sz":"0.01"}`)}
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
	cancel := &venue.Request{Method: "POST", Path: "/api/v5/trade/cancel-order", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"instId":"BTC-USDT","ordId":"` + venueID + `"}`)}
	if status, body := venuetest.Send(t, v, vi.BaseURL, cancel); status != 200 {
		t.Fatalf("cancel: %d %s", status, body)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, id); err != nil || !found || got != venueID {
		t.Fatalf("cancelled: %q %v %v, want %q", got, found, err, venueID)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, v.NewClientOrderID([16]byte{7})); err != nil || found || got != "" {
		t.Fatalf("unknown id: %q %v %v", got, found, err)
	}
	st := s.Stats(sandbox.VenueOKX)
	if st.Orders != 1 || st.AuthFailures != 0 || st.Operations["trade.order_details"] != 3 {
		t.Fatalf("stats %+v", st)
	}
	for _, bad := range []string{`{"code":"50011","msg":"Too Many Requests","data":[]}`, `{"code":"0","data":[]}`, `{"code":"0","data":[{"ordId":"1","clOrdId":"other"}]}`, `nope`} {
		if _, _, err := v.Found(id, 200, []byte(bad)); err == nil {
			t.Fatalf("Found decided on %s", bad)
		}
	}
	if v.VenueOrderID(200, []byte(`{"code":"1","data":[{"ordId":"","sCode":"51008"}]}`)) != "" {
		t.Fatal("VenueOrderID of a refusal")
	}
}
