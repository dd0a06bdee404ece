package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
)

// TestE2EKrakenRateLimitInBody: Kraken reports its REST counter exceeded
// as "EAPI:Rate limit exceeded" inside an HTTP 200. keystile runs without
// a counter model here (tier: none), so the emulator's (starter tier) is
// the first to say so: that answer reaches the bot unchanged, and the
// bot's next calls are answered 429 rate_limited with Retry-After by
// keystile itself, without reaching the venue and deepening the
// restriction.
func TestE2EKrakenRateLimitInBody(t *testing.T) {
	venues := []e2eVenue{exchangeVenues()[1]} // kraken
	h := startHarness(t, harnessOptions{Venues: venues,
		Credentials: map[string]map[string]string{sandbox.VenueKraken: {"tier": "starter"}}})
	tok := h.botToken(t).Token
	read := venues[0].read
	limited := -1
	for i := range 40 {
		resp, err := formCall(h, tok, sandbox.VenueKraken, read)
		if err != nil {
			t.Fatal(err)
		}
		if resp.status != http.StatusOK {
			t.Fatalf("call %d before the venue's limit: %d %s", i, resp.status, resp.raw())
		}
		if strings.Contains(resp.raw(), "EAPI:Rate limit exceeded") {
			limited = i
			break
		}
	}
	if limited < 0 {
		t.Fatal("the emulator's starter counter never ran out in 40 calls")
	}
	t.Logf("the venue answered EAPI:Rate limit exceeded at call %d", limited+1)
	before := h.sb.Stats(sandbox.VenueKraken).Requests
	for i := range 5 {
		resp, err := formCall(h, tok, sandbox.VenueKraken, read)
		if err != nil {
			t.Fatal(err)
		}
		if resp.status != http.StatusTooManyRequests || resp.errorCode() != "rate_limited" || resp.header.Get("Retry-After") == "" {
			t.Fatalf("call %d after the venue's limit: %d %q %s, want keystile's 429 rate_limited with Retry-After", i, resp.status, resp.errorCode(), resp.raw())
		}
	}
	if n := h.sb.Stats(sandbox.VenueKraken).Requests - before; n != 0 {
		t.Fatalf("%d calls reached the venue during its restriction", n)
	}
}
