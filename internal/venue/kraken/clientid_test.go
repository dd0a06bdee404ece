package kraken_test

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewClientOrderID(t *testing.T) {
	v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
	ff := [16]byte{}
	for i := range ff {
		ff[i] = 0xff
	}
	for _, s := range [][16]byte{{}, ff, {1, 2, 3}} {
		if id := v.NewClientOrderID(s); !uuidRE.MatchString(id) || id != v.NewClientOrderID(s) {
			t.Fatalf("id %q", id)
		}
	}
}

func TestSetClientOrderID(t *testing.T) {
	v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
	venuetest.RunSetClientOrderID(t, v, "id1", []venuetest.SetClientOrderIDCase{
		{"added to the body", "/0/private/AddOrder", "", "nonce=1&pair=XBTUSD&type=buy&ordertype=market&volume=1",
			"", "nonce=1&pair=XBTUSD&type=buy&ordertype=market&volume=1&cl_ord_id=id1", false},
		{"replaced in the body, query copy dropped", "/0/private/AddOrder", "cl_ord_id=q", "pair=XBTUSD&cl_ord_id=b&type=sell&ordertype=market&volume=1",
			"", "pair=XBTUSD&cl_ord_id=id1&type=sell&ordertype=market&volume=1", false},
		{"query only", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=market&volume=1&cl_ord_id=q", "",
			"pair=XBTUSD&type=buy&ordertype=market&volume=1&cl_ord_id=id1", "", false},
		{"userref excludes cl_ord_id", "/0/private/AddOrder", "", "pair=XBTUSD&type=buy&ordertype=market&volume=1&userref=7", "", "", true},
		{"edit refused", "/0/private/EditOrder", "", "pair=XBTUSD&txid=O1&volume=2", "", "", true},
		{"not an order", "/0/private/Balance", "", "", "", "", true},
	})
}

func FuzzSetClientOrderID(f *testing.F) {
	f.Add("cl_ord_id=x", "pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=2", []byte("seed"))
	f.Add("", "pair=XBTUSD&type=sell&cl_ord_id=&cl_%6Frd_id=z&oflags=viqc&volume=3", []byte{})
	f.Add("pair=XBTUSD&type=buy", "&&", []byte{1})
	f.Fuzz(func(t *testing.T, query, body string, seed []byte) {
		v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
		r := &venue.Request{Method: "POST", Path: "/0/private/AddOrder", RawQuery: query, Body: []byte(body)}
		venuetest.SetClientOrderIDRoundTrip(t, v, r, seed)
	})
}

// TestLookupAgainstSandbox: placed with a client order id, the order is
// found through OpenOrders, and through ClosedOrders once cancelled; an
// unknown id is definitively not found; one order reached the sandbox.
func TestLookupAgainstSandbox(t *testing.T) {
	s, vi := startKraken(t)
	v, err := kraken.New(kraken.Options{Credentials: creds(cred(vi.Credentials))})
	if err != nil {
		t.Fatal(err)
	}
	place := &venue.Request{Method: "POST", Path: "/0/private/AddOrder", Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		Body: []byte("pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=30000")}
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
	cancel := &venue.Request{Method: "POST", Path: "/0/private/CancelOrder", Header: http.Header{}, Body: []byte("txid=" + venueID)}
	if status, body := venuetest.Send(t, v, vi.BaseURL, cancel); status != 200 || v.VenueOrderID(status, body) != "" {
		t.Fatalf("cancel: %d %s", status, body)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, id); err != nil || !found || got != venueID {
		t.Fatalf("closed: %q %v %v, want %q", got, found, err, venueID)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, v.NewClientOrderID([16]byte{7})); err != nil || found || got != "" {
		t.Fatalf("unknown id: %q %v %v", got, found, err)
	}
	st := s.Stats(sandbox.VenueKraken)
	if st.Orders != 1 || st.Operations["OpenOrders"] != 3 || st.Operations["ClosedOrders"] != 3 || st.AuthFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, bad := range []string{`{"error":["EAPI:Invalid nonce"]}`, `{"error":[],"result":{"closed":{},"count":60}}`, `{"error":[],"result":{}}`, `[`} {
		if _, _, err := v.Found(id, 200, []byte(bad)); err == nil {
			t.Fatalf("Found decided on %s", bad)
		}
	}
}
