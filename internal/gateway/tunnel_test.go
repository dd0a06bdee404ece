package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/token"
)

// serveTunnelled runs one request through the gateway the way the forward
// proxy hands it over: the tunnel's token in the context.
func (h *harness) serveTunnelled(tunnelTok, method, target string, hdr http.Header) response {
	h.t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req = req.WithContext(gateway.WithTunnelToken(context.Background(), tunnelTok))
	w := httptest.NewRecorder()
	h.gw.ServeHTTP(w, req)
	return response{Status: w.Code, Header: w.Result().Header, Body: w.Body.Bytes()}
}

// TestTunnelTokenWins: a tunnel's token authenticates the request whatever
// token-like headers the request carries, and it is verified every time.
func TestTunnelTokenWins(t *testing.T) {
	h := newHarness(t, config{})
	tunnel, tunnelRec := h.mint(token.CreateRequest{})
	other, _ := h.mint(token.CreateRequest{})
	for _, tc := range []struct {
		name string
		hdr  http.Header
	}{
		{"no header", nil},
		{"another token in Keystile-Token", http.Header{gateway.HeaderToken: {other}}},
		{"another token as bearer", http.Header{"Authorization": {"Bearer " + other}}},
		{"garbage in Keystile-Token", http.Header{gateway.HeaderToken: {"kst_nope"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.serveTunnelled(tunnel, "GET", "/v/api/account", tc.hdr)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			if e := h.event(t, r); e.TokenID != string(tunnelRec.ID) {
				t.Fatalf("authenticated as %s, want the tunnel's %s", e.TokenID, tunnelRec.ID)
			}
			for _, s := range h.up.requests() {
				if s.Header.Get(gateway.HeaderToken) != "" || s.Header.Get("Authorization") != "" {
					t.Fatal("a bot token header reached the venue")
				}
			}
		})
	}
	// Revoked mid-tunnel: refused from the next request, even with a
	// valid token in the headers.
	if err := h.tokens.Revoke(context.Background(), tunnelRec.ID); err != nil {
		t.Fatal(err)
	}
	r := h.serveTunnelled(tunnel, "GET", "/v/api/account", http.Header{gateway.HeaderToken: {other}})
	if r.Status != http.StatusUnauthorized || r.Header.Get(gateway.HeaderError) != "unauthorized" {
		t.Fatalf("after revocation: %d %v %s", r.Status, r.Header, r.Body)
	}
	checkEvent(t, h.event(t, r), "deny", "token.revoked", http.StatusUnauthorized)
}

// TestErrorMarker: keystile's own answers carry Keystile-Error; a venue
// cannot forge it.
func TestErrorMarker(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{})
	if r := h.do(t, "POST", "/v/api/withdraw", tok, nil, nil); r.Status != http.StatusForbidden || r.Header.Get(gateway.HeaderError) != "denied" {
		t.Fatalf("denial: %d %v", r.Status, r.Header)
	}
	if r := h.do(t, "GET", "/v/api/account", "", nil, nil); r.Header.Get(gateway.HeaderError) != "unauthorized" {
		t.Fatalf("missing token: %v", r.Header)
	}
	h.up.handle(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(gateway.HeaderError, "denied")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"venue":"says no"}`))
	})
	r := h.do(t, "GET", "/v/api/account", tok, nil, nil)
	if r.Status != http.StatusForbidden || r.Header.Get(gateway.HeaderError) != "" || string(r.Body) != `{"venue":"says no"}` {
		t.Fatalf("a venue's answer kept a forged marker: %d %v %s", r.Status, r.Header, r.Body)
	}
}
