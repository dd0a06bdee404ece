package fanout_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/fanout"
)

// memSource is a VersionSource in memory: PostgreSQL's is tested in
// store/postgres, Redis's transport in store/redis.
type memSource struct {
	mu    sync.Mutex
	v     map[string]int64
	fail  bool
	reads atomic.Int64
}

func (s *memSource) Version(_ context.Context, topic string) (int64, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return 0, errors.New("connection refused")
	}
	return s.v[topic], nil
}

func (s *memSource) bump(topic string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v == nil {
		s.v = map[string]int64{}
	}
	s.v[topic]++
}

func (s *memSource) setFail(f bool) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

// memTransport delivers announcements in process.
type memTransport struct {
	mu   sync.Mutex
	subs map[string][]chan int64
	n    int64
}

func (m *memTransport) Publish(_ context.Context, topic string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	for _, ch := range m.subs[topic] {
		ch <- m.n
	}
	return nil
}

func (m *memTransport) Subscribe(ctx context.Context, topic string, fn func(int64)) error {
	ch := make(chan int64, 1024)
	m.mu.Lock()
	if m.subs == nil {
		m.subs = map[string][]chan int64{}
	}
	m.subs[topic] = append(m.subs[topic], ch)
	m.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case v := <-ch:
			fn(v)
		}
	}
}

func (m *memTransport) subscribers(topic string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs[topic])
}

// calls records fn's calls.
type calls struct {
	ch chan int64
}

func newCalls() *calls      { return &calls{ch: make(chan int64, 1024)} }
func (c *calls) fn(v int64) { c.ch <- v }
func (c *calls) within(d time.Duration) (int64, bool) {
	select {
	case v := <-c.ch:
		return v, true
	case <-time.After(d):
		return 0, false
	}
}

func TestNew(t *testing.T) {
	if _, err := fanout.New(fanout.Options{}); err == nil {
		t.Error("neither source nor transport accepted")
	}
	if _, err := fanout.New(fanout.Options{Source: &memSource{}, PollInterval: -1}); err == nil {
		t.Error("negative interval accepted")
	}
	b, err := fanout.New(fanout.Options{Source: &memSource{}})
	if err != nil || b.PollInterval() != time.Second {
		t.Fatalf("default interval: %v %v", b.PollInterval(), err)
	}
	b, err = fanout.New(fanout.Options{Transport: &memTransport{}})
	if err != nil || b.PollInterval() != 0 {
		t.Fatalf("no source: %v %v", b.PollInterval(), err)
	}
	// Without a transport, Publish does nothing and succeeds.
	b, _ = fanout.New(fanout.Options{Source: &memSource{}})
	if err := b.Publish(context.Background(), fanout.TopicTokens); err != nil {
		t.Fatal(err)
	}
}

// TestPollOnly: PostgreSQL without Redis. The baseline does not call fn;
// each change does, within the interval; no change, no call.
func TestPollOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &memSource{}
	src.bump(fanout.TopicTokens)
	src.bump(fanout.TopicTokens)
	const every = 50 * time.Millisecond
	b, _ := fanout.New(fanout.Options{Source: src, PollInterval: every})
	c := newCalls()
	done := b.Watch(ctx, fanout.TopicTokens, c.fn)
	if v, ok := c.within(4 * every); ok {
		t.Fatalf("called for the baseline (version %d)", v)
	}
	for want := int64(3); want <= 5; want++ {
		src.bump(fanout.TopicTokens)
		start := time.Now()
		v, ok := c.within(time.Second)
		if !ok || v != want {
			t.Fatalf("after a bump: %d %v, want %d", v, ok, want)
		}
		if d := time.Since(start); d > every+200*time.Millisecond {
			t.Errorf("bump seen after %v (interval %v)", d, every)
		}
	}
	// Another topic's bumps are not this one's.
	src.bump(fanout.TopicVault)
	if v, ok := c.within(4 * every); ok {
		t.Fatalf("called for another topic (%d)", v)
	}
	cancel()
	<-done
}

// TestSourceDownAtStart: without a baseline, the first good poll calls fn
// (state may be stale); a failing source is retried each interval.
func TestSourceDownAtStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &memSource{}
	src.setFail(true)
	b, _ := fanout.New(fanout.Options{Source: src, PollInterval: 20 * time.Millisecond})
	c := newCalls()
	done := b.Watch(ctx, "t", c.fn)
	if _, ok := c.within(100 * time.Millisecond); ok {
		t.Fatal("called while the source fails")
	}
	src.setFail(false)
	if v, ok := c.within(time.Second); !ok || v != 0 {
		t.Fatalf("first good poll: %d %v", v, ok)
	}
	if _, ok := c.within(100 * time.Millisecond); ok {
		t.Fatal("called again without a change")
	}
	cancel()
	<-done
}

// TestTransportCoalesced: a burst of 200 announcements gives few calls,
// never two at once, and the last call starts after the last announcement
// (so it reads the newest state). A poll after a transport-triggered call
// does not call again for the same change.
func TestTransportCoalesced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &memSource{}
	tr := &memTransport{}
	b, _ := fanout.New(fanout.Options{Source: src, Transport: tr, PollInterval: 30 * time.Millisecond})
	var running, overlap, n atomic.Int64
	var mu sync.Mutex
	var lastStart time.Time
	done := b.Watch(ctx, "t", func(int64) {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		mu.Lock()
		lastStart = time.Now()
		mu.Unlock()
		n.Add(1)
		time.Sleep(10 * time.Millisecond)
		running.Add(-1)
	})
	for tr.subscribers("t") == 0 {
		time.Sleep(time.Millisecond)
	}
	var lastPub time.Time
	for range 200 {
		src.bump("t")
		if err := b.Publish(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		lastPub = time.Now()
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(200 * time.Millisecond)
	calls := n.Load()
	mu.Lock()
	ls := lastStart
	mu.Unlock()
	if overlap.Load() != 0 || calls == 0 || calls >= 200 || ls.Before(lastPub) {
		t.Fatalf("%d calls, %d overlapping, last call %v after the last publish", calls, overlap.Load(), ls.Sub(lastPub))
	}
	// Polls see the version the last call recorded: no more calls.
	time.Sleep(150 * time.Millisecond)
	if n.Load() != calls {
		t.Fatalf("polls called fn again: %d calls, then %d", calls, n.Load())
	}
	t.Logf("200 announcements: %d calls", calls)
	cancel()
	<-done
}

// TestNoBusyLoop: a watcher with nothing to do reads the source once per
// interval, and a failing source no more often.
func TestNoBusyLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &memSource{}
	const every = 20 * time.Millisecond
	b, _ := fanout.New(fanout.Options{Source: src, PollInterval: every})
	done := b.Watch(ctx, "t", func(int64) {})
	time.Sleep(500 * time.Millisecond)
	src.setFail(true)
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-done
	if n := src.reads.Load(); n < 10 || n > 1000*time.Millisecond.Milliseconds()/every.Milliseconds()+5 {
		t.Fatalf("%d reads in 1 s at one per %v", n, every)
	}
}

// TestStopsOnCancel: every goroutine ends when ctx does.
func TestStopsOnCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &memTransport{}
	b, _ := fanout.New(fanout.Options{Source: &memSource{}, Transport: tr, PollInterval: 10 * time.Millisecond})
	var dones []<-chan struct{}
	for _, topic := range []string{fanout.TopicTokens, fanout.TopicKillSwitch, fanout.TopicVault} {
		dones = append(dones, b.Watch(ctx, topic, func(int64) {}))
	}
	time.Sleep(50 * time.Millisecond)
	if runtime.NumGoroutine() < before+3 {
		t.Fatalf("%d goroutines before, %d watching", before, runtime.NumGoroutine())
	}
	cancel()
	for _, d := range dones {
		select {
		case <-d:
		case <-time.After(2 * time.Second):
			t.Fatal("a watch did not stop")
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left, %d before", n, before)
	}
}
