package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	kconfig "github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/token"
)

// lateDetector lets the detector be built after the harness (it shares
// the harness's clock): it is the gateway's Guard and event sink.
type lateDetector struct {
	d atomic.Pointer[detect.Detector]
}

func (l *lateDetector) Record(ctx context.Context, e audit.Event) {
	if d := l.d.Load(); d != nil {
		d.Record(ctx, e)
	}
}

func (l *lateDetector) Admit(tokenID, venueID string, now time.Time) (string, time.Duration) {
	if d := l.d.Load(); d != nil {
		return d.Admit(tokenID, venueID, now)
	}
	return "", 0
}

// TestGuardHoldsBack: through the gateway and a real detector fed by its
// events, a withdrawal attempt throttles its token and a burst of venue
// 5xx freezes the venue; held requests are refused with the hold's rule
// before anything is signed or forwarded, and other tokens and venues are
// untouched.
func TestGuardHoldsBack(t *testing.T) {
	ctx := context.Background()
	lg := &lateDetector{}
	h := newHarness(t, config{guard: lg, events: lg})
	cfg, err := kconfig.Parse("t.yaml", []byte(`venues:
  v: {type: binance, credential: cred-v, base_url: "https://v.example"}
  w: {type: binance, credential: cred-w, base_url: "https://w.example"}
detect:
  throttle: {requests: 2, per: 1m, duration: 10m}
  detectors:
    sensitive_operations: {actions: [throttle]}
    venue_errors: {threshold: 2, actions: [freeze_venue]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := detect.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := detect.New(ctx, detect.Options{Settings: s, SourceKey: []byte("0123456789abcdef0123"), Now: h.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(ctx) })
	lg.d.Store(d)
	sync := func() {
		t.Helper()
		if err := d.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tokA, _ := h.mint(token.CreateRequest{Venues: []string{"v", "w"}})
	tokB, _ := h.mint(token.CreateRequest{Venues: []string{"v", "w"}})

	if r := h.do(t, http.MethodPost, "/v/api/withdraw", tokA, strings.NewReader("amount=1"), nil); r.Status != http.StatusForbidden {
		t.Fatalf("withdrawal: %d", r.Status)
	}
	sync()
	before := h.up.count()
	var codes []int
	for range 3 {
		r := h.do(t, http.MethodGet, "/v/api/ticker", tokA, nil, nil)
		codes = append(codes, r.Status)
		if r.Status == http.StatusTooManyRequests {
			pe := errorOf(t, r)
			if pe.Error.Rule != detect.RuleThrottle || pe.Error.Code != "throttled" || r.Header.Get("Retry-After") == "" {
				t.Fatalf("throttled answer %+v, Retry-After %q", pe, r.Header.Get("Retry-After"))
			}
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("throttled token (2/min): %v", codes)
	}
	if n := h.up.count() - before; n != 2 {
		t.Fatalf("%d requests reached the upstream, want 2", n)
	}
	for range 3 {
		if r := h.do(t, http.MethodGet, "/v/api/ticker", tokB, nil, nil); r.Status != http.StatusOK {
			t.Fatalf("other token: %d", r.Status)
		}
	}

	h.up.handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefixW) {
			w.WriteHeader(http.StatusNotImplemented)
		}
	})
	for range 2 {
		if r := h.do(t, http.MethodGet, "/w/api/ticker", tokB, nil, nil); r.Status != http.StatusNotImplemented {
			t.Fatalf("venue w: %d", r.Status)
		}
	}
	sync()
	before = h.up.count()
	r := h.do(t, http.MethodGet, "/w/api/ticker", tokB, nil, nil)
	if pe := errorOf(t, r); r.Status != http.StatusForbidden || pe.Error.Rule != detect.RuleFrozenVenue || pe.Error.Message != msgForbidden {
		t.Fatalf("frozen venue: %d %+v", r.Status, pe)
	}
	if h.up.count() != before {
		t.Fatal("a request to the frozen venue reached the upstream")
	}
	if r := h.do(t, http.MethodGet, "/v/api/ticker", tokB, nil, nil); r.Status != http.StatusOK {
		t.Fatalf("other venue: %d", r.Status)
	}
	if err := d.Release(ctx, detect.HoldFreezeVenue, "w"); err != nil {
		t.Fatal(err)
	}
	if r := h.do(t, http.MethodGet, "/w/api/ticker", tokB, nil, nil); r.Status != http.StatusNotImplemented {
		t.Fatalf("released venue: %d", r.Status)
	}
}
