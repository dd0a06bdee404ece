package binance_test

import (
	"crypto/rand"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

var binanceID = regexp.MustCompile(`^[.A-Z:/a-z0-9_-]{1,36}$`)

func seeds() [][16]byte {
	var r [16]byte
	_, _ = rand.Read(r[:])
	var ff [16]byte
	for i := range ff {
		ff[i] = 0xff
	}
	return [][16]byte{{}, ff, r}
}

func TestNewClientOrderID(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: creds(nil)})
	for _, s := range seeds() {
		id := v.NewClientOrderID(s)
		if !binanceID.MatchString(id) || id != v.NewClientOrderID(s) {
			t.Fatalf("id %q for seed %x", id, s)
		}
	}
	if v.NewClientOrderID([16]byte{1}) == v.NewClientOrderID([16]byte{2}) {
		t.Fatal("different seeds, same id")
	}
}

func TestSetClientOrderID(t *testing.T) {
	v, _ := binance.New(binance.Options{Credentials: creds(nil)})
	venuetest.RunSetClientOrderID(t, v, "ks1", []venuetest.SetClientOrderIDCase{
		{"added to the body", "/api/v3/order", "", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=2",
			"", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=2&newClientOrderId=ks1", false},
		{"added to the query", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1", "",
			"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&newClientOrderId=ks1", "", false},
		{"replaced in the body", "/api/v3/order", "", "symbol=BTCUSDT&newClientOrderId=mine&side=SELL&type=MARKET&quantity=1",
			"", "symbol=BTCUSDT&newClientOrderId=ks1&side=SELL&type=MARKET&quantity=1", false},
		{"query wins, body copy dropped", "/api/v3/order", "symbol=BTCUSDT&newClientOrder%49d=q", "side=BUY&type=MARKET&quantity=1&newClientOrderId=b&newClientOrderId=c",
			"symbol=BTCUSDT&newClientOrderId=ks1", "side=BUY&type=MARKET&quantity=1", false},
		{"sor", "/api/v3/sor/order", "", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=2",
			"", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=2&newClientOrderId=ks1", false},
		{"order list refused", "/api/v3/orderList/oco", "symbol=BTCUSDT&side=SELL&quantity=1", "", "", "", true},
		{"not an order", "/api/v3/openOrders", "", "", "", "", true},
		{"json refused", "/api/v3/order", "", `{"symbol":"BTCUSDT"}`, "", "", true},
	})
}

// FuzzSetClientOrderID: for any request Normalize reads as an order,
// SetClientOrderID gives one Normalize reads with the new id and the same
// other fields.
func FuzzSetClientOrderID(f *testing.F) {
	f.Add("/api/v3/order", "symbol=BTCUSDT&side=BUY", "type=LIMIT&quantity=1&price=2&newClientOrderId=x", []byte("0123456789abcdef"))
	f.Add("/api/v3/order", "symbol=BTCUSDT&side=SELL&newClientOrderId=&newClientOrderId=z", "newClientOrderI%64=y", []byte{})
	f.Add("/api/v3/order/cancelReplace", "", "symbol=ETHBTC&side=BUY&&quantity=1&", []byte{1})
	f.Fuzz(func(t *testing.T, path, query, body string, seed []byte) {
		v, _ := binance.New(binance.Options{Credentials: creds(nil)})
		r := &venue.Request{Method: "POST", Path: path, RawQuery: query, Body: []byte(body)}
		venuetest.SetClientOrderIDRoundTrip(t, v, r, seed)
	})
}

// TestLookupAgainstSandbox: an order placed with a keystile client order
// id is found by LookupRequests/Found (with the venue order id of the
// placement answer); an unknown id is definitively not found; the sandbox
// received exactly one order.
func TestLookupAgainstSandbox(t *testing.T) {
	s, vi := startBinance(t, sandbox.Options{})
	v, err := binance.New(binance.Options{Credentials: creds(cred(vi.Credentials))})
	if err != nil {
		t.Fatal(err)
	}
	place := &venue.Request{Method: "POST", Path: "/api/v3/order", Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		Body: []byte("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price=37000")}
	id := v.NewClientOrderID([16]byte{9, 9, 9})
	if err := v.SetClientOrderID(place, id); err != nil {
		t.Fatal(err)
	}
	o, err := v.Normalize(place)
	if err != nil {
		t.Fatal(err)
	}
	status, body := venuetest.Send(t, v, vi.BaseURL, place)
	venueID := v.VenueOrderID(status, body)
	if status != 200 || venueID == "" {
		t.Fatalf("place: %d %s", status, body)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, id); err != nil || !found || got != venueID {
		t.Fatalf("lookup = %q %v %v, want %q", got, found, err, venueID)
	}
	if got, found, err := venuetest.Lookup(t, v, vi.BaseURL, place, o, v.NewClientOrderID([16]byte{1})); err != nil || found || got != "" {
		t.Fatalf("lookup of an unknown id = %q %v %v", got, found, err)
	}
	st := s.Stats(sandbox.VenueBinance)
	if st.Orders != 1 || st.Operations["order.query"] != 2 || st.AuthFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, _, err := v.Found(id, 500, []byte(`{"code":-1000}`)); err == nil {
		t.Fatal("a 500 answer decided the lookup")
	}
	if v.VenueOrderID(400, []byte(`{"code":-2010,"orderId":1}`)) != "" {
		t.Fatal("VenueOrderID of a refusal")
	}
	if !strings.Contains(vi.BaseURL, "127.0.0.1") {
		t.Fatal("sandbox not on loopback")
	}
}
