package gateway_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/token"
)

// TestAuthFailureLimit: a source that keeps presenting bad tokens is
// refused with 429 before its tokens are looked at, the refusal is
// audited, a good token from that source is refused too until the bucket
// refills, and the limit never reaches the upstream.
func TestAuthFailureLimit(t *testing.T) {
	h := newHarness(t, config{})
	good, _ := h.mint(token.CreateRequest{})
	bad := badChecksum(good)
	for i := range gateway.DefaultAuthFailureBurst {
		r := h.do(t, http.MethodGet, "/v/api/ticker", bad, nil, nil)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i, r.Status)
		}
	}
	r := h.do(t, http.MethodGet, "/v/api/ticker", bad, nil, nil)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: status %d, want 429", gateway.DefaultAuthFailureBurst, r.Status)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	checkEvent(t, h.event(t, r), "deny", "token.brute_force", http.StatusTooManyRequests)
	if pe := errorOf(t, r); pe.Error.Rule != "token.brute_force" {
		t.Fatalf("rule %q", pe.Error.Rule)
	}
	// A valid token from the blocked source waits too: the guesser
	// cannot tell a hit from a miss while blocked.
	if r := h.do(t, http.MethodGet, "/v/api/ticker", good, nil, nil); r.Status != http.StatusTooManyRequests {
		t.Fatalf("good token while blocked: status %d, want 429", r.Status)
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("upstream saw %d requests", n)
	}
	// One interval later one more try is allowed.
	h.clock.advance(gateway.DefaultAuthFailureEvery + time.Millisecond)
	if r := h.do(t, http.MethodGet, "/v/api/ticker", good, nil, nil); r.Status != http.StatusOK {
		t.Fatalf("good token after refill: status %d, want 200 (%s)", r.Status, r.Body)
	}
	if r := h.do(t, http.MethodGet, "/v/api/ticker", bad, nil, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("one more guess after refill: status %d, want 401", r.Status)
	}
	if r := h.do(t, http.MethodGet, "/v/api/ticker", bad, nil, nil); r.Status != http.StatusTooManyRequests {
		t.Fatalf("second guess after one refill: status %d, want 429", r.Status)
	}
	// Wrong-venue refusals of a valid token are not guesses.
	h.clock.advance(time.Duration(gateway.DefaultAuthFailureBurst) * gateway.DefaultAuthFailureEvery)
	other, _ := h.mint(token.CreateRequest{Venues: []string{"w"}})
	for i := range 3 * gateway.DefaultAuthFailureBurst {
		if r := h.do(t, http.MethodGet, "/v/api/ticker", other, nil, nil); r.Status != http.StatusForbidden {
			t.Fatalf("wrong venue %d: status %d, want 403", i, r.Status)
		}
	}
}
