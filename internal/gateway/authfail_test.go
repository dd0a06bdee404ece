package gateway_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/token"
)

// TestAuthFailureLimit: a source that keeps presenting tokens keystile
// never issued is answered 429 token.brute_force once its bucket is
// empty (audited, with Retry-After, never reaching the upstream) and may
// guess again one interval later — but a valid token from that same
// source is served all along.
func TestAuthFailureLimit(t *testing.T) {
	h := newHarness(t, config{})
	good, _ := h.mint(token.CreateRequest{})
	guesses := []string{badChecksum(good), foreignToken(t)} // malformed, unknown
	for i := range gateway.DefaultAuthFailureBurst {
		r := h.do(t, http.MethodGet, "/v/api/ticker", guesses[i%2], nil, nil)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i, r.Status)
		}
	}
	for _, g := range guesses {
		r := h.do(t, http.MethodGet, "/v/api/ticker", g, nil, nil)
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
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("upstream saw %d requests", n)
	}
	// A token that verifies is never refused by the limits.
	for i := range 3 {
		if r := h.do(t, http.MethodGet, "/v/api/ticker", good, nil, nil); r.Status != http.StatusOK {
			t.Fatalf("good token %d while guesses are blocked: status %d, want 200 (%s)", i, r.Status, r.Body)
		}
	}
	// One interval later one more guess is allowed.
	h.clock.advance(gateway.DefaultAuthFailureEvery + time.Millisecond)
	if r := h.do(t, http.MethodGet, "/v/api/ticker", guesses[0], nil, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("one more guess after refill: status %d, want 401", r.Status)
	}
	if r := h.do(t, http.MethodGet, "/v/api/ticker", guesses[1], nil, nil); r.Status != http.StatusTooManyRequests {
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

// TestRevokedTokenRetriesBlockOnlyItself: a revoked bot that keeps
// retrying (30 times) from the shared loopback address slows down only
// itself (429 token.retry_limit after the burst); a different valid
// token from the same address is served throughout, and the retries
// are not counted as guesses at other tokens. An expired token is
// treated the same way.
func TestRevokedTokenRetriesBlockOnlyItself(t *testing.T) {
	h := newHarness(t, config{})
	ctx := context.Background()
	good, _ := h.mint(token.CreateRequest{})
	revoked, rec := h.mint(token.CreateRequest{Name: "old-bot"})
	if err := h.tokens.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		r := h.do(t, http.MethodGet, "/v/api/ticker", revoked, nil, nil)
		want, rule := http.StatusUnauthorized, "token.revoked"
		if i >= gateway.DefaultAuthFailureBurst {
			want, rule = http.StatusTooManyRequests, "token.retry_limit"
		}
		if r.Status != want {
			t.Fatalf("revoked retry %d: status %d, want %d", i, r.Status, want)
		}
		if i == 0 || i == 29 {
			checkEvent(t, h.event(t, r), "deny", rule, want)
		}
		if g := h.do(t, http.MethodGet, "/v/api/ticker", good, nil, nil); g.Status != http.StatusOK {
			t.Fatalf("valid token after %d revoked retries: status %d (%s)", i+1, g.Status, g.Body)
		}
	}
	// The retries were no guesses: an unknown token still gets its own
	// full burst of plain refusals.
	unknown := foreignToken(t)
	for i := range gateway.DefaultAuthFailureBurst {
		if r := h.do(t, http.MethodGet, "/v/api/ticker", unknown, nil, nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("unknown token %d after the revoked retries: status %d, want 401", i, r.Status)
		}
	}
	// An expired token is limited per token in the same way.
	expiring, _ := h.mint(token.CreateRequest{Name: "short", TTL: time.Minute})
	h.clock.advance(2 * time.Minute)
	for i := range gateway.DefaultAuthFailureBurst {
		if r := h.do(t, http.MethodGet, "/v/api/ticker", expiring, nil, nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("expired %d: status %d, want 401", i, r.Status)
		}
	}
	if r := h.do(t, http.MethodGet, "/v/api/ticker", expiring, nil, nil); r.Status != http.StatusTooManyRequests {
		t.Fatalf("expired after the burst: status %d, want 429", r.Status)
	}
	if g := h.do(t, http.MethodGet, "/v/api/ticker", good, nil, nil); g.Status != http.StatusOK {
		t.Fatalf("valid token after the expired retries: status %d", g.Status)
	}
}
