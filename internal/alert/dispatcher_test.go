package alert_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
)

func sample(detector, token string, sev alert.Severity) alert.Alert {
	return alert.Alert{
		Detector: detector, Severity: sev, Subject: alert.Subject{Token: token, Venue: "binance"},
		Summary:  "order 10x the usual size from a new address",
		Evidence: []alert.Field{{Key: "notional", Value: "12000 USDT"}, {Key: "baseline_p99", Value: "1100 USDT"}},
		Action:   "keystile token freeze " + token,
	}
}

// TestDeliverToEverySinkWithRetries: every sink gets the alert; a sink
// that answers 503 twice gets it on the third attempt, every attempt
// carrying the same idempotency key and a signature that verifies.
func TestDeliverToEverySinkWithRetries(t *testing.T) {
	a, b := newReceiver(t), newReceiver(t)
	b.setFail(http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{a.sink(t, "a"), b.sink(t, "b")}})
	if !d.Send(sample("detect.order_size", "tok_one", alert.SeverityHigh)) {
		t.Fatal("Send refused")
	}
	ga := a.waitFor("one alert at a", func(r []received) bool { return len(r) == 1 })
	gb := b.waitFor("one alert at b", func(r []received) bool { return len(r) == 1 })
	if ga[0].Alert.ID != gb[0].Alert.ID || !strings.HasPrefix(ga[0].Alert.ID, "alr_") {
		t.Fatalf("ids %q %q", ga[0].Alert.ID, gb[0].Alert.ID)
	}
	if gb[0].Idempotency != gb[0].Alert.ID {
		t.Fatalf("Idempotency-Key %q, alert id %q", gb[0].Idempotency, gb[0].Alert.ID)
	}
	b.mu.Lock()
	attempts, bad := b.attempts[gb[0].Idempotency], b.bad
	b.mu.Unlock()
	if attempts != 3 || bad != 0 {
		t.Fatalf("b saw %d attempts under one idempotency key (want 3), %d bad signatures", attempts, bad)
	}
	got := ga[0].Alert
	if got.Detector != "detect.order_size" || got.Severity != alert.SeverityHigh || got.Subject.Token != "tok_one" ||
		got.Count != 1 || len(got.Evidence) != 2 || got.Action == "" || got.Time.IsZero() || got.Kind != alert.KindAlert {
		t.Fatalf("received %+v", got)
	}
	st := waitStatus(t, d, "b", func(s alert.SinkStatus) bool { return s.Delivered == 1 })
	if st.Delivered != 1 || st.Retries != 2 || st.Failed != 0 || !st.Healthy {
		t.Fatalf("status b %+v", st)
	}
}

// TestPermanentFailureNotRetried: a 400 answer is not retried; the failure
// is counted, and reported to the sink once it accepts again.
func TestPermanentFailureNotRetried(t *testing.T) {
	r := newReceiver(t)
	r.setFail(http.StatusBadRequest)
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{r.sink(t, "w")}})
	d.Send(sample("detect.x", "tok_a", alert.SeverityHigh))
	st := waitStatus(t, d, "w", func(s alert.SinkStatus) bool { return s.Failed == 1 })
	if st.Failed != 1 || st.Retries != 0 || st.Healthy || !strings.Contains(st.LastError, "400") {
		t.Fatalf("status %+v", st)
	}
	d.Send(sample("detect.y", "tok_a", alert.SeverityHigh))
	got := r.waitFor("the next alert and the loss report", func(g []received) bool { return len(byKind(g, alert.KindDropped)) == 1 })
	loss := byKind(got, alert.KindDropped)[0].Alert
	if !strings.Contains(loss.Summary, "1 not delivered after retries") || loss.Severity != alert.SeverityHigh {
		t.Fatalf("loss report %+v", loss)
	}
}

// TestStalledSinkNeverBlocks: a sink whose server never answers does not
// slow Send, nor delay another sink; its queue fills and drops are
// counted; once it answers again it is told how many alerts it lost; Close
// with a deadline returns in bounded time.
func TestStalledSinkNeverBlocks(t *testing.T) {
	stalled, healthy := newReceiver(t), newReceiver(t)
	stalled.setStall(true)
	sc := stalled.sink(t, "stalled")
	sc.Timeout = 200 * time.Millisecond
	d := newDispatcher(t, alert.Options{
		Policy: alert.Policy{QueueSize: 16, Retry: alert.Retry{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}},
		Sinks:  []alert.SinkConfig{sc, healthy.sink(t, "healthy")},
	})
	const n = 200
	start := time.Now()
	accepted := 0
	for i := range n {
		if d.Send(sample("detect.burst", fmt.Sprintf("tok_%03d", i), alert.SeverityHigh)) {
			accepted++
		}
		if i%16 == 15 {
			time.Sleep(5 * time.Millisecond) // let the router keep up
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("%d Sends took %s with a stalled sink", n, el)
	}
	// The healthy sink gets every accepted alert it did not drop itself
	// (its queue is small too), while the other sink still stalls.
	healthy.waitFor("the healthy sink's alerts", func(g []received) bool {
		return len(byKind(g, alert.KindAlert))+int(sinkStatus(t, d, "healthy").Dropped) == accepted
	})
	st := sinkStatus(t, d, "stalled")
	if st.Dropped == 0 {
		t.Fatalf("stalled sink dropped nothing: %+v", st)
	}
	// Recovery: the stalled sink answers again and learns of its losses.
	stalled.setStall(false)
	got := stalled.waitFor("the loss report", func(g []received) bool { return len(byKind(g, alert.KindDropped)) > 0 })
	rep := byKind(got, alert.KindDropped)[0].Alert
	if !strings.Contains(rep.Summary, "dropped because a queue was full") {
		t.Fatalf("loss report %q", rep.Summary)
	}
	// Close in bounded time even with a sink stalled again.
	stalled.setStall(true)
	for i := range 5 {
		d.Send(sample("detect.late", fmt.Sprintf("tok_late%d", i), alert.SeverityHigh))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_ = d.Close(ctx)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Close took %s", el)
	}
	if d.Send(sample("detect.after", "tok_x", alert.SeverityHigh)) {
		t.Fatal("Send accepted after Close")
	}
}

// TestDedupeWindow: repeats of one (detector, subject) within the window
// are folded into one later message with their count; another subject is
// not affected; a more severe alert goes out at once.
func TestDedupeWindow(t *testing.T) {
	r := newReceiver(t)
	d := newDispatcher(t, alert.Options{Policy: alert.Policy{DedupeWindow: 400 * time.Millisecond}, Sinks: []alert.SinkConfig{r.sink(t, "w")}})
	for range 5 {
		d.Send(sample("detect.rate", "tok_a", alert.SeverityLow))
	}
	d.Send(sample("detect.rate", "tok_b", alert.SeverityLow))
	got := r.waitFor("first of each subject", func(g []received) bool { return len(g) == 2 })
	for _, g := range got {
		if g.Alert.Count != 1 {
			t.Fatalf("first message folded something: %+v", g.Alert)
		}
	}
	d.Send(sample("detect.rate", "tok_a", alert.SeverityHigh)) // escalation
	got = r.waitFor("the escalation", func(g []received) bool { return len(g) == 3 })
	esc := got[2].Alert
	if esc.Severity != alert.SeverityHigh || esc.Count != 5 || esc.FirstSeen.IsZero() {
		t.Fatalf("escalation should go out at once with the 4 held repeats folded in: %+v", esc)
	}
	if st := d.Status(context.Background()); st.Folded != 4 || st.Held != 0 {
		t.Fatalf("status %+v", st)
	}
	// Repeats after the escalation are held until the window ends, then
	// summarised in one message.
	for range 3 {
		d.Send(sample("detect.rate", "tok_a", alert.SeverityMedium))
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(r.alerts()); n != 3 {
		t.Fatalf("repeats inside the window went out: %d messages", n)
	}
	got = r.waitFor("the summary", func(g []received) bool { return len(g) == 4 })
	sum := got[3].Alert
	if sum.Count != 3 || sum.Severity != alert.SeverityMedium || sum.Subject.Token != "tok_a" {
		t.Fatalf("summary %+v", sum)
	}
	if !strings.Contains(alert.Text(&sum, 0), "repeated: 3 alerts of this kind") {
		t.Fatalf("text does not say it folds 3: %s", alert.Text(&sum, 0))
	}
}

// TestRateLimit: with dedupe off and 2 messages per 400ms, five alerts of
// one pair give two messages at once and one summary of the other three.
func TestRateLimit(t *testing.T) {
	r := newReceiver(t)
	d := newDispatcher(t, alert.Options{Policy: alert.Policy{RateCount: 2, RatePer: 400 * time.Millisecond}, Sinks: []alert.SinkConfig{r.sink(t, "w")}})
	for range 5 {
		d.Send(sample("detect.auth_failures", "tok_a", alert.SeverityMedium))
	}
	r.waitFor("two at once", func(g []received) bool { return len(g) == 2 })
	got := r.waitFor("the summary", func(g []received) bool { return len(g) == 3 })
	if got[2].Alert.Count != 3 {
		t.Fatalf("summary count %d, want 3", got[2].Alert.Count)
	}
	total := 0
	for _, g := range got {
		total += g.Alert.Count
	}
	if total != 5 {
		t.Fatalf("counts add up to %d, want 5", total)
	}
}

// TestIngressDropsReported: alerts refused by a full routing queue are
// counted and reported to the sinks.
func TestIngressDropsReported(t *testing.T) {
	r := newReceiver(t)
	r.setStall(true)
	sc := r.sink(t, "w")
	d := newDispatcher(t, alert.Options{Policy: alert.Policy{QueueSize: 16}, Sinks: []alert.SinkConfig{sc}})
	dropped := 0
	for i := range 500 {
		if !d.Send(sample("detect.flood", fmt.Sprintf("tok_%d", i), alert.SeverityHigh)) {
			dropped++
		}
	}
	if dropped == 0 || d.Status(context.Background()).Dropped != uint64(dropped) {
		t.Fatalf("dropped %d, status %+v", dropped, d.Status(context.Background()))
	}
	r.setStall(false)
	got := r.waitFor("the loss report", func(g []received) bool { return len(byKind(g, alert.KindDropped)) > 0 })
	total := 0
	for _, g := range byKind(got, alert.KindDropped) {
		for _, f := range g.Alert.Evidence {
			if f.Key == "dropped_queue_full" {
				var n int
				fmt.Sscan(f.Value, &n)
				total += n
			}
		}
	}
	if total < dropped {
		t.Fatalf("reported %d dropped, at least %d were refused by Send", total, dropped)
	}
}

// TestMinSeverityAndTest: a sink's min_severity filters; Test reaches
// every sink once and reports each outcome; an unknown sink is an error.
func TestMinSeverityAndTest(t *testing.T) {
	all, high := newReceiver(t), newReceiver(t)
	hc := high.sink(t, "high")
	hc.MinSeverity = alert.SeverityHigh
	broken := all.sink(t, "broken")
	broken.Sink = failingSink{}
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{all.sink(t, "all"), hc, broken}})
	d.Send(sample("detect.a", "tok_1", alert.SeverityLow))
	d.Send(sample("detect.b", "tok_1", alert.SeverityCritical))
	all.waitFor("both", func(g []received) bool { return len(g) == 2 })
	got := high.waitFor("the critical one", func(g []received) bool { return len(g) >= 1 })
	if len(got) != 1 || got[0].Alert.Severity != alert.SeverityCritical {
		t.Fatalf("high sink got %+v", got)
	}
	res, err := d.Test(context.Background(), "")
	if err != nil || len(res) != 3 {
		t.Fatalf("Test: %v %+v", err, res)
	}
	for _, r := range res {
		want := r.Sink != "broken"
		if r.OK != want || (!want && !strings.Contains(r.Error, "refused")) {
			t.Errorf("test result %+v", r)
		}
	}
	tests := byKind(high.alerts(), alert.KindTest)
	if len(tests) != 1 {
		t.Fatalf("min_severity must not hide a test alert: %d", len(tests))
	}
	if res, err := d.Test(context.Background(), "high"); err != nil || len(res) != 1 || !res[0].OK {
		t.Fatalf("Test high: %v %+v", err, res)
	}
	if _, err := d.Test(context.Background(), "nope"); !errors.Is(err, alert.ErrUnknownSink) {
		t.Fatalf("unknown sink: %v", err)
	}
}

type failingSink struct{}

func (failingSink) Deliver(context.Context, *alert.Alert) error {
	return alert.Permanent("post", errors.New("refused by test"))
}

// TestReconfigure: a sink that stays keeps its counters; a new one
// receives; a removed one receives nothing more; the policy changes.
func TestReconfigure(t *testing.T) {
	a, b := newReceiver(t), newReceiver(t)
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{a.sink(t, "a")}})
	d.Send(sample("detect.1", "tok_1", alert.SeverityHigh))
	a.waitFor("first", func(g []received) bool { return len(g) == 1 })
	if err := d.Reconfigure([]alert.SinkConfig{b.sink(t, "b"), a.sink(t, "a")}, alert.Policy{DedupeWindow: time.Hour, Retry: fastRetry}); err != nil {
		t.Fatal(err)
	}
	d.Send(sample("detect.2", "tok_1", alert.SeverityHigh))
	d.Send(sample("detect.2", "tok_1", alert.SeverityHigh)) // folded now
	b.waitFor("b gets it", func(g []received) bool { return len(g) == 1 })
	a.waitFor("a gets it", func(g []received) bool { return len(g) == 2 })
	waitStatus(t, d, "a", func(s alert.SinkStatus) bool { return s.Delivered == 2 })
	if err := d.Reconfigure([]alert.SinkConfig{b.sink(t, "b")}, alert.Policy{Retry: fastRetry}); err != nil {
		t.Fatal(err)
	}
	d.Send(sample("detect.3", "tok_1", alert.SeverityHigh))
	b.waitFor("b gets the third", func(g []received) bool { return len(g) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := len(a.alerts()); n != 2 {
		t.Fatalf("removed sink a received %d", n)
	}
	if err := d.Reconfigure([]alert.SinkConfig{b.sink(t, "b"), b.sink(t, "b")}, alert.Policy{}); err == nil {
		t.Fatal("duplicate sink names accepted")
	}
}

// TestCloseFlushesHeld: alerts held by deduplication at Close are sent as
// a summary, not lost.
func TestCloseFlushesHeld(t *testing.T) {
	r := newReceiver(t)
	d, err := alert.New(alert.Options{Policy: alert.Policy{DedupeWindow: time.Hour, Retry: fastRetry}, Sinks: []alert.SinkConfig{r.sink(t, "w")}})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		d.Send(sample("detect.z", "tok_z", alert.SeverityMedium))
	}
	r.waitFor("first", func(g []received) bool { return len(g) == 1 })
	time.Sleep(50 * time.Millisecond) // let the router hold the rest
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := r.alerts()
	if len(got) != 2 || got[1].Alert.Count != 3 {
		t.Fatalf("after Close: %+v", got)
	}
}

// TestRecent: Send remembers the last alerts, scrubbed, newest first,
// bounded by alert.RecentCapacity.
func TestRecent(t *testing.T) {
	d, err := alert.New(alert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	start := time.Now()
	for i := range alert.RecentCapacity + 5 {
		d.Send(alert.Alert{Detector: "detect.test", Severity: alert.SeverityHigh, Summary: fmt.Sprintf("alert %d kst_live_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ", i)})
	}
	got := d.Recent(start.Add(-time.Second))
	if len(got) != alert.RecentCapacity {
		t.Fatalf("%d alerts remembered, want %d", len(got), alert.RecentCapacity)
	}
	if !strings.HasPrefix(got[0].Summary, fmt.Sprintf("alert %d ", alert.RecentCapacity+4)) || !strings.HasPrefix(got[len(got)-1].Summary, "alert 5 ") {
		t.Fatalf("order: first %q last %q", got[0].Summary, got[len(got)-1].Summary)
	}
	if strings.Contains(got[0].Summary, "abcdefghijklmnop") {
		t.Fatalf("not scrubbed: %q", got[0].Summary)
	}
	if got[0].ID == "" || got[0].Kind != alert.KindAlert {
		t.Fatalf("not normalised: %+v", got[0])
	}
	if len(d.Recent(time.Now().Add(time.Hour))) != 0 {
		t.Fatal("since is not applied")
	}
}
