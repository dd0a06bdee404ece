package detect_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/detect"
)

// TestBaselinesSurviveRestart: learn, close (saves), start a new detector
// from the same SQLite file: the profile is the same, and the baseline
// judges at once (no second warm-up).
func TestBaselinesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keystile.db")
	s := settings(t, "detectors:\n  order_size: {factor: 5, warmup_events: 20, warmup_time: 1h}\n  new_source: {warmup_events: 10, warmup_time: 10m}\n")

	db := openDB(t, path)
	rg := newRig(t, s, db.Detect())
	evs := warmupOrders("tok_a", t0)
	for i := range 12 {
		evs = append(evs, read("tok_a", "10.0.0.1", t0.Add(time.Duration(i)*time.Minute)))
	}
	eth := order("tok_a", t0.Add(2*time.Hour), 65)
	eth.Instrument, eth.Venue = "ETHUSDT", "kraken"
	rg.feed(t, append(evs, eth)...)
	before, ok, err := rg.d.Profile(ctx, "tok_a")
	if err != nil || !ok {
		t.Fatalf("profile: %v %v", ok, err)
	}
	if !before.Size["n:USDT"].Ready || before.Orders != 31 || len(before.Instruments) != 2 || before.Sources != 1 {
		t.Fatalf("learned profile %+v", before)
	}
	if err := rg.d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	rg2 := newRig(t, s, db.Detect())
	after, ok, err := rg2.d.Profile(ctx, "tok_a")
	if err != nil || !ok {
		t.Fatalf("profile after restart: %v %v", ok, err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("profile changed across the restart:\nbefore %+v\nafter  %+v", before, after)
	}
	rg2.feed(t, order("tok_a", t0.Add(3*time.Hour), 700), read("tok_a", "10.0.0.1", t0.Add(3*time.Hour)))
	if fs := rg2.n.of(detect.OrderSize); len(fs) != 1 {
		t.Fatalf("after restart a 10× order raised %d order_size findings, want 1", len(fs))
	}
	if fs := rg2.n.of(detect.NewSource); len(fs) != 0 {
		t.Fatalf("a known source looked new after the restart: %+v", fs)
	}
}

// TestStoredStateHoldsNoSecrets: what the detector stores names tokens by
// public id and sources only as keyed hashes; a canary address, and token
// text that a caller might leak into an event, never reach the store.
func TestStoredStateHoldsNoSecrets(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "keystile.db"))
	rg := newRig(t, settings(t, ""), db.Detect())
	const canarySource = "203.0.113.199"
	var evs []audit.Event
	for i := range 40 {
		e := order("tok_a", t0.Add(time.Duration(i)*time.Minute), 60)
		e.Source = canarySource
		e.Path = "/api/v3/order?signature=CANARYSIG"
		e.Error = "kst_live_CANARYTOKENCANARYTOKENCANARYTOKEN"
		evs = append(evs, e)
	}
	rg.feed(t, evs...)
	if err := rg.d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	profiles, err := db.Detect().Profiles(ctx)
	if err != nil || len(profiles) != 1 {
		t.Fatalf("profiles %d, %v", len(profiles), err)
	}
	for _, needle := range []string{canarySource, "CANARY", "kst_"} {
		if strings.Contains(string(profiles[0].Data), needle) {
			t.Fatalf("stored profile contains %q: %s", needle, profiles[0].Data)
		}
	}
}

// stall is a notifier that blocks until released: a stalled alert sink.
type stall struct {
	release chan struct{}
	once    sync.Once
	got     []detect.Finding
	mu      sync.Mutex
}

func (s *stall) Notify(_ context.Context, f detect.Finding) {
	s.once.Do(func() { <-s.release })
	s.mu.Lock()
	s.got = append(s.got, f)
	s.mu.Unlock()
}

// TestFullQueueDropsWithoutBlocking: with the worker stuck behind a
// stalled notifier, 100,000 Records all return (a stuck Record would hang
// the test) and the excess is dropped and counted; once the notifier
// recovers, the loss is reported as a queue_drops finding.
func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	ctx := context.Background()
	st := &stall{release: make(chan struct{})}
	clk := newClock(t0)
	d, err := detect.New(ctx, detect.Options{Settings: settings(t, "queue_size: 64\n"), SourceKey: sourceKey, Notifier: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	d.Record(ctx, withdrawal("tok_a", t0)) // its alert stalls the worker
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100_000 {
			d.Record(ctx, read("tok_a", "10.0.0.1", t0.Add(time.Duration(i)*time.Millisecond)))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Record blocked behind a stalled detector")
	}
	stats := d.Stats()
	if stats.Dropped < 100_000-64 || stats.Queued > 64 {
		t.Fatalf("stats %+v: want at least %d dropped, at most 64 queued", stats, 100_000-64)
	}
	close(st.release)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var drops []detect.Finding
	for _, f := range st.got {
		if f.Detector == detect.QueueDrops {
			drops = append(drops, f)
		}
	}
	if len(drops) != 1 || drops[0].Evidence.Observed < 100_000-64 {
		t.Fatalf("queue_drops findings %+v", drops)
	}
}

// TestMemoryBounded: adversarial streams cannot grow the detector's state
// past its caps: many tokens, and one token with thousands of
// instruments, venues, currencies and sources.
func TestMemoryBounded(t *testing.T) {
	ctx := context.Background()
	rg := newRig(t, settings(t, "max_tokens: 50\n"))
	var evs []audit.Event
	for i := range 2000 {
		evs = append(evs, read(fmt.Sprintf("tok_%04d", i), "10.0.0.1", t0.Add(time.Duration(i)*time.Millisecond)))
	}
	for i := range 3000 {
		e := order("tok_hog", t0.Add(time.Duration(i)*time.Second), 60)
		e.Instrument = fmt.Sprintf("COIN%dUSDT", i)
		e.Venue = fmt.Sprintf("venue%d", i%100)
		e.Source = fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256)
		e.Notional = fmt.Sprintf("60 C%d", i)
		evs = append(evs, e)
		q := order("tok_hog", t0.Add(time.Duration(i)*time.Second), 60)
		q.Notional, q.Instrument = "", strings.Repeat("X", 500)+fmt.Sprint(i)
		evs = append(evs, q)
	}
	for i := range 20_000 {
		evs = append(evs, audit.Event{Time: t0, Source: fmt.Sprintf("198.%d.%d.%d", i/65536, (i/256)%256, i%256), Rule: "token.unknown", Decision: audit.Deny, Status: 401})
	}
	rg.feed(t, evs...)
	if n := rg.d.Stats().Profiles; n > 51 {
		t.Fatalf("%d profiles, cap 50 (+ admin)", n)
	}
	p, ok, err := rg.d.Profile(ctx, "tok_hog")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if len(p.Instruments) > 64 || len(p.Venues) > 32 || p.Sources > 16 || len(p.Notional) > 8 || len(p.Size) > 16 {
		t.Fatalf("caps broken: %d instruments, %d venues, %d sources, %d notional, %d size",
			len(p.Instruments), len(p.Venues), p.Sources, len(p.Notional), len(p.Size))
	}
	for k := range p.Instruments {
		if len(k) > 128 {
			t.Fatalf("instrument key of %d bytes kept", len(k))
		}
	}
	if _, ok, _ := rg.d.Profile(ctx, "tok_0000"); ok {
		t.Fatal("the least recently active token was not forgotten")
	}
}

// TestManyProfilesSaved: profiles are saved in small transactions; every
// one of 150 comes back after a restart, and the ones evicted beyond
// max_tokens are deleted from the store.
func TestManyProfilesSaved(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "keystile.db"))
	rg := newRig(t, settings(t, "max_tokens: 150\n"), db.Detect())
	var evs []audit.Event
	for i := range 200 {
		evs = append(evs, read(fmt.Sprintf("tok_%03d", i), "10.0.0.1", t0.Add(time.Duration(i)*time.Second)))
	}
	rg.feed(t, evs[:150]...)
	if err := rg.d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rg2 := newRig(t, settings(t, "max_tokens: 150\n"), db.Detect())
	if n := rg2.d.Stats().Profiles; n != 150 {
		t.Fatalf("%d profiles after restart, want 150", n)
	}
	rg2.feed(t, evs[150:]...) // evicts 50
	if err := rg2.d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := db.Detect().Profiles(ctx)
	if err != nil || len(stored) != 150 {
		t.Fatalf("%d stored profiles, want 150 (%v)", len(stored), err)
	}
	if stored[0].Key != "token:tok_050" {
		t.Fatalf("first stored %q: the least recently active were not the ones deleted", stored[0].Key)
	}
}

// TestReloadHoldsSeesAnotherProcess: two detectors on one store stand for
// two replicas. A hold another process put (or released) takes effect on
// ReloadHolds; a throttle that did not change keeps its spent bucket.
func TestReloadHoldsSeesAnotherProcess(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "keystile.db"))
	s := settings(t, "")
	b := newRig(t, s, db.Detect())
	other := db.Detect() // replica A's writes
	now := t0.Add(time.Minute)
	if rule, _ := b.d.Admit("tok_a", "binance", now); rule != "" {
		t.Fatalf("before any hold: %q", rule)
	}
	if err := other.PutHold(ctx, detect.Hold{Kind: detect.HoldFreezeVenue, Subject: "binance", Since: t0, Detector: "order_size", Finding: "f1"}); err != nil {
		t.Fatal(err)
	}
	if rule, _ := b.d.Admit("tok_a", "binance", now); rule != "" {
		t.Fatalf("before ReloadHolds: %q (the test would not show its effect)", rule)
	}
	if err := b.d.ReloadHolds(ctx); err != nil {
		t.Fatal(err)
	}
	if rule, _ := b.d.Admit("tok_a", "binance", now); rule != detect.RuleFrozenVenue {
		t.Fatalf("after ReloadHolds: %q, want %s", rule, detect.RuleFrozenVenue)
	}
	// A throttle of 2 per hour: spend it, reload, still spent.
	th := detect.Hold{Kind: detect.HoldThrottle, Subject: "tok_b", Since: t0, Until: t0.Add(time.Hour), Requests: 2, Per: time.Hour, Detector: "rate", Finding: "f2"}
	if err := other.PutHold(ctx, th); err != nil {
		t.Fatal(err)
	}
	if err := b.d.ReloadHolds(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if rule, _ := b.d.Admit("tok_b", "kraken", now); rule != "" {
			t.Fatalf("throttled request %d of 2: %q", i+1, rule)
		}
	}
	if rule, _ := b.d.Admit("tok_b", "kraken", now); rule != detect.RuleThrottle {
		t.Fatalf("third request: %q, want %s", rule, detect.RuleThrottle)
	}
	if err := other.DeleteHold(ctx, detect.HoldFreezeVenue, "binance"); err != nil {
		t.Fatal(err)
	}
	if err := b.d.ReloadHolds(ctx); err != nil {
		t.Fatal(err)
	}
	if rule, _ := b.d.Admit("tok_a", "binance", now); rule != "" {
		t.Fatalf("after the release elsewhere and ReloadHolds: %q", rule)
	}
	if rule, _ := b.d.Admit("tok_b", "kraken", now); rule != detect.RuleThrottle {
		t.Fatalf("a reload refilled an unchanged throttle: %q", rule)
	}
}
