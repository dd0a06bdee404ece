package detect_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
)

// clock is an injected clock; tests move it, nothing sleeps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// notifier captures the findings sent to alert.
type notifier struct {
	mu       sync.Mutex
	findings []detect.Finding
}

func (n *notifier) Notify(_ context.Context, f detect.Finding) {
	n.mu.Lock()
	n.findings = append(n.findings, f)
	n.mu.Unlock()
}

func (n *notifier) all() []detect.Finding {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]detect.Finding(nil), n.findings...)
}

// of returns the findings of one detector.
func (n *notifier) of(det string) []detect.Finding {
	var out []detect.Finding
	for _, f := range n.all() {
		if f.Detector == det {
			out = append(out, f)
		}
	}
	return out
}

// responder records freezes and kills.
type responder struct {
	mu      sync.Mutex
	freezes []string
	kills   int
	fail    error
}

func (r *responder) FreezeToken(_ context.Context, id, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if reason == "" {
		return fmt.Errorf("freeze without a reason")
	}
	r.freezes = append(r.freezes, id)
	return nil
}

func (r *responder) Kill(_ context.Context, f detect.Finding, reason string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.ID == "" || reason == "" {
		return false, fmt.Errorf("kill without a finding or a reason")
	}
	r.kills++
	return r.kills == 1, r.fail
}

// recorder captures detect audit records.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Detect(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

// settings compiles a detect section written in YAML (under detect:),
// through the real config parser and its validation.
func settings(t testing.TB, yaml string, venues ...string) *detect.Settings {
	t.Helper()
	var b strings.Builder
	if len(venues) > 0 {
		b.WriteString("venues:\n")
		for _, v := range venues {
			fmt.Fprintf(&b, "  %s:\n    type: binance\n    credential: %s-cred\n    base_url: https://%s.example\n", v, v, v)
		}
	}
	if yaml != "" {
		b.WriteString("detect:\n")
		for _, l := range strings.Split(strings.TrimRight(yaml, "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	s, err := detect.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rig is a detector with capturing collaborators and an injected clock.
type rig struct {
	d   *detect.Detector
	clk *clock
	n   *notifier
	r   *responder
	rec *recorder
}

var sourceKey = []byte("source-key-for-tests-0123456789")

// t0 is a Monday, 2026-03-02 09:00 UTC.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func newRig(t testing.TB, s *detect.Settings, stores ...any) *rig {
	t.Helper()
	rg := &rig{clk: newClock(t0), n: &notifier{}, r: &responder{}, rec: &recorder{}}
	o := detect.Options{Settings: s, SourceKey: sourceKey, Notifier: rg.n, Responder: rg.r, Recorder: rg.rec, Now: rg.clk.Now}
	for _, st := range stores {
		if ps, ok := st.(detect.ProfileStore); ok {
			o.Profiles = ps
		}
		if hs, ok := st.(detect.HoldStore); ok {
			o.Holds = hs
		}
	}
	d, err := detect.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	rg.d = d
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return rg
}

// feed records events and waits until they are analysed.
func (rg *rig) feed(t testing.TB, evs ...audit.Event) {
	t.Helper()
	for _, e := range evs {
		rg.d.Record(context.Background(), e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rg.d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

var reqSeq int

func reqID() string {
	reqSeq++
	return fmt.Sprintf("req-%06d", reqSeq)
}

// order is an allowed order placement of tok at t with a notional in USDT.
func order(tok string, t time.Time, usdt float64) audit.Event {
	return audit.Event{Time: t, RequestID: reqID(), TokenID: tok, Source: "10.0.0.1", Venue: "binance", Method: "POST",
		Path: "/api/v3/order", Operation: "order.place", Decision: audit.Allow, Status: 200, Upstream: 200,
		Instrument: "BTCUSDT", Side: "BUY", OrderType: "LIMIT", Quantity: fmt.Sprintf("%.6f", usdt/60000), Price: "60000",
		Notional: fmt.Sprintf("%.4f USDT", usdt)}
}

// read is an allowed account read of tok at t from src.
func read(tok, src string, t time.Time) audit.Event {
	return audit.Event{Time: t, RequestID: reqID(), TokenID: tok, Source: src, Venue: "binance", Method: "GET",
		Path: "/api/v3/account", Operation: "account.read", Decision: audit.Allow, Status: 200, Upstream: 200}
}

// jitter returns v varied by up to ±10 % deterministically with i.
func jitter(v float64, i int) float64 { return v * (0.9 + 0.2*float64((i*7)%11)/10) }
