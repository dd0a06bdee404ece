package gateway_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
)

// TestSetVenues replaces the served set on a live gateway: an invalid list
// changes nothing, a removed venue answers 404, an added one is served, and
// a venue passed again with the same Impl keeps serving.
func TestSetVenues(t *testing.T) {
	h := newHarness(t, config{})
	tr, err := upstream.New(upstream.Options{Hosts: []string{h.up.host()}, RootCAs: h.up.pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	ep := func(prefix string) *gateway.Endpoint {
		u, err := url.Parse("https://" + h.up.host() + prefix)
		if err != nil {
			t.Fatal(err)
		}
		return &gateway.Endpoint{BaseURL: u, Transport: tr}
	}
	tok, _ := h.mint(token.CreateRequest{Venues: []string{"v", "x"}, Scopes: []string{"market.read"}})
	get := func(venueID string) response {
		t.Helper()
		return h.do(t, http.MethodGet, "/"+venueID+"/api/ticker", tok, nil, nil)
	}
	if r := get("v"); r.Status != http.StatusOK {
		t.Fatalf("v before: %d", r.Status)
	}
	if r := get("x"); r.Status != http.StatusNotFound {
		t.Fatalf("x before: %d, want 404", r.Status)
	}

	x := &testVenue{table: testTable(), key: secret.FromString(canary)}
	bad := [][]gateway.Venue{
		{{ID: "v", Impl: h.venueV, Live: ep(prefixV)}, {ID: "v", Impl: x, Live: ep("/pfx-x")}},
		{{ID: "x", Impl: x, Live: ep("/pfx-x")}, {ID: "y/z", Impl: x, Live: ep("/pfx-x")}},
		{{ID: "x", Impl: x}},
	}
	for i, vs := range bad {
		if err := h.gw.SetVenues(vs); err == nil {
			t.Fatalf("bad list %d accepted", i)
		}
		if r := get("v"); r.Status != http.StatusOK {
			t.Fatalf("after bad list %d, v answered %d: a refused list must change nothing", i, r.Status)
		}
		if r := get("x"); r.Status != http.StatusNotFound {
			t.Fatalf("after bad list %d, x answered %d", i, r.Status)
		}
	}

	if err := h.gw.SetVenues([]gateway.Venue{{ID: "x", Impl: x, Live: ep("/pfx-x")}}); err != nil {
		t.Fatal(err)
	}
	if r := get("x"); r.Status != http.StatusOK {
		t.Fatalf("added x: %d", r.Status)
	}
	if got := h.up.requests(); got[len(got)-1].Path != "/pfx-x/api/ticker" {
		t.Errorf("x forwarded to %s", got[len(got)-1].Path)
	}
	if r := get("v"); r.Status != http.StatusNotFound || errorOf(t, r).Error.Code != "unknown_venue" {
		t.Fatalf("removed v: %d", r.Status)
	}
	if err := h.gw.SetVenues([]gateway.Venue{{ID: "v", Impl: h.venueV, Live: ep(prefixV)}, {ID: "x", Impl: x, Live: ep("/pfx-x")}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"v", "x"} {
		if r := get(id); r.Status != http.StatusOK {
			t.Fatalf("%s after re-adding: %d", id, r.Status)
		}
	}

	// Requests racing swaps: v is in every set, so it always answers 200.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			vs := []gateway.Venue{{ID: "v", Impl: h.venueV, Live: ep(prefixV)}}
			if i%2 == 0 {
				vs = append(vs, gateway.Venue{ID: "x", Impl: x, Live: ep("/pfx-x")})
			}
			if err := h.gw.SetVenues(vs); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		if r := get("v"); r.Status != http.StatusOK {
			t.Fatalf("v during swaps: %d", r.Status)
		}
	}
	<-done
}
