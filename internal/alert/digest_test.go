package alert_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
)

// clockAt returns a clock that runs at real speed but reads as start now.
func clockAt(start time.Time) func() time.Time {
	base := time.Now()
	return func() time.Time { return start.Add(time.Since(base)) }
}

// TestDigest: alerts up to the digest's severity wait in the store and go
// out together at the digest time; more severe ones go out at once.
func TestDigest(t *testing.T) {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	// 07:59:59 London time: the 08:00 digest is one second away.
	now := clockAt(time.Date(2026, 7, 1, 7, 59, 59, 0, loc))
	r := newReceiver(t)
	sc := r.sink(t, "w")
	sc.Digest = &alert.Schedule{MaxSeverity: alert.SeverityLow, Hour: 8, Location: loc}
	store := alert.NewMemoryStore()
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{sc}, Store: store, Now: now})
	for i := range 3 {
		d.Send(sample("detect.new_instrument", fmt.Sprintf("tok_%d", i), alert.SeverityLow))
	}
	d.Send(sample("detect.withdrawal", "tok_9", alert.SeverityCritical))
	got := r.waitFor("the critical alert", func(g []received) bool { return len(g) >= 1 })
	if got[0].Alert.Severity != alert.SeverityCritical {
		t.Fatalf("first message %+v", got[0].Alert)
	}
	st := waitStatus(t, d, "w", func(s alert.SinkStatus) bool { return s.Digested == 3 })
	if st.Digest == nil || st.Digest.Pending != 3 || st.Digest.Schedule != "08:00 Europe/London" {
		t.Fatalf("digest status %+v", st.Digest)
	}
	got = r.waitFor("the digest", func(g []received) bool { return len(byKind(g, alert.KindDigest)) == 1 })
	dg := byKind(got, alert.KindDigest)[0].Alert
	if len(dg.Items) != 3 || dg.Severity != alert.SeverityLow || !strings.HasPrefix(dg.ID, "dig_") || dg.Detector != alert.DetectorDigest {
		t.Fatalf("digest %+v", dg)
	}
	text := alert.Text(&dg, 0)
	for i := range 3 {
		if !strings.Contains(text, fmt.Sprintf("token tok_%d", i)) {
			t.Fatalf("digest text lacks item %d:\n%s", i, text)
		}
	}
	waitStatus(t, d, "w", func(s alert.SinkStatus) bool { return s.Digest.Pending == 0 })
	if st := sinkStatus(t, d, "w"); !st.Digest.Next.After(now().Add(23 * time.Hour)) {
		t.Fatalf("next digest %s, want tomorrow", st.Digest.Next)
	}
}

// TestDigestSurvivesRestart: items kept by one Dispatcher are sent by the
// next one (same store) when it starts after the digest time they missed.
func TestDigestSurvivesRestart(t *testing.T) {
	r := newReceiver(t)
	store := alert.NewMemoryStore()
	day1 := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	sched := &alert.Schedule{MaxSeverity: alert.SeverityMedium, Hour: 9}
	sc := r.sink(t, "w")
	sc.Digest = sched
	d1, err := alert.New(alert.Options{Sinks: []alert.SinkConfig{sc}, Store: store, Now: clockAt(day1), Policy: alert.Policy{Retry: fastRetry}})
	if err != nil {
		t.Fatal(err)
	}
	d1.Send(sample("detect.hours", "tok_a", alert.SeverityMedium))
	d1.Send(sample("detect.hours", "tok_b", alert.SeverityInfo))
	waitStatus(t, d1, "w", func(s alert.SinkStatus) bool { return s.Digested == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := store.CountDigest(ctx, "w"); n != 2 || len(r.alerts()) != 0 {
		t.Fatalf("after the first run: %d pending, %d sent", n, len(r.alerts()))
	}
	// The next morning at 10:00: the 09:00 digest was missed.
	d2 := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{sc}, Store: store, Now: clockAt(day1.Add(22 * time.Hour))})
	got := r.waitFor("the missed digest", func(g []received) bool { return len(g) == 1 })
	if got[0].Alert.Kind != alert.KindDigest || len(got[0].Alert.Items) != 2 {
		t.Fatalf("got %+v", got[0].Alert)
	}
	waitStatus(t, d2, "w", func(s alert.SinkStatus) bool { return s.Digest.Pending == 0 })
}

// TestDigestFailureKeepsItems: a digest that cannot be delivered leaves
// its items in the store.
func TestDigestFailureKeepsItems(t *testing.T) {
	r := newReceiver(t)
	r.setFail(400)
	store := alert.NewMemoryStore()
	sc := r.sink(t, "w")
	sc.Digest = &alert.Schedule{MaxSeverity: alert.SeverityLow}
	ctx := context.Background()
	_ = store.AddDigest(ctx, "w", alert.Alert{ID: "alr_x", Kind: alert.KindAlert, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Detector: "d", Severity: alert.SeverityLow, Summary: "s", Count: 1})
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{sc}, Store: store, Now: clockAt(time.Date(2026, 1, 2, 1, 0, 0, 0, time.UTC))})
	st := waitStatus(t, d, "w", func(s alert.SinkStatus) bool { return s.Failed == 1 })
	if st.Digest.Pending != 1 || st.Digest.Next.Before(time.Date(2026, 1, 2, 1, 10, 0, 0, time.UTC)) {
		t.Fatalf("after a failed digest: %+v", st.Digest)
	}
}

func TestScheduleNextPrev(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	tests := []struct {
		name       string
		s          alert.Schedule
		now        time.Time
		next, prev time.Time
	}{
		{"before today's", alert.Schedule{Hour: 8}, time.Date(2026, 5, 1, 7, 0, 0, 0, time.UTC),
			time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC), time.Date(2026, 4, 30, 8, 0, 0, 0, time.UTC)},
		{"exactly at", alert.Schedule{Hour: 8}, time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC),
			time.Date(2026, 5, 2, 8, 0, 0, 0, time.UTC), time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)},
		{"month end", alert.Schedule{Hour: 23, Minute: 30}, time.Date(2026, 1, 31, 23, 45, 0, 0, time.UTC),
			time.Date(2026, 2, 1, 23, 30, 0, 0, time.UTC), time.Date(2026, 1, 31, 23, 30, 0, 0, time.UTC)},
		{"zone", alert.Schedule{Hour: 9, Location: ny}, time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
			time.Date(2026, 6, 1, 9, 0, 0, 0, ny), time.Date(2026, 5, 31, 9, 0, 0, 0, ny)},
		{"dst gap", alert.Schedule{Hour: 2, Minute: 30, Location: ny}, time.Date(2026, 3, 8, 1, 0, 0, 0, ny),
			time.Date(2026, 3, 8, 3, 30, 0, 0, ny), time.Date(2026, 3, 7, 2, 30, 0, 0, ny)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Next(tt.now); !got.Equal(tt.next) {
				t.Errorf("Next = %s, want %s", got, tt.next)
			}
			if got := tt.s.Prev(tt.now); !got.Equal(tt.prev) {
				t.Errorf("Prev = %s, want %s", got, tt.prev)
			}
		})
	}
}

func TestMemoryStoreBounds(t *testing.T) {
	ctx := context.Background()
	m := alert.NewMemoryStore()
	for i := range alert.MaxDigestItems {
		if err := m.AddDigest(ctx, "s", alert.Alert{ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.AddDigest(ctx, "s", alert.Alert{}); err != alert.ErrDigestFull {
		t.Fatalf("over the bound: %v", err)
	}
	items, _ := m.PendingDigest(ctx, "s", 10)
	if err := m.DeleteDigest(ctx, "s", items[9].Seq); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := m.CountDigest(ctx, "s"); n != alert.MaxDigestItems-10 {
		t.Fatalf("count %d", n)
	}
}
