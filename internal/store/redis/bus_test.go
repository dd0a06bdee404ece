package redisstore_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/fanout"
	redisstore "github.com/keystile/keystile/internal/store/redis"
)

// counterSource stands for PostgreSQL's version counter (store/postgres
// implements fanout.VersionSource; this package does not import it).
type counterSource struct {
	mu    sync.Mutex
	v     map[string]int64
	reads atomic.Int64
}

func (s *counterSource) Version(_ context.Context, topic string) (int64, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v[topic], nil
}

func (s *counterSource) bump(topic string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v == nil {
		s.v = map[string]int64{}
	}
	s.v[topic]++
}

// subscribers is the number of subscriptions to the bus channel of topic.
func subscribers(t testing.TB, prefix, topic string) int64 {
	t.Helper()
	ro, err := redis.ParseURL(os.Getenv("KEYSTILE_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ro)
	defer rdb.Close()
	ch := prefix + "fanout:" + topic
	m, err := rdb.PubSubNumSub(context.Background(), ch).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m[ch]
}

// replica is one gateway replica's fan-out: its own Redis client, the
// shared source.
type replica struct {
	bus   *fanout.Bus
	calls chan time.Time
	done  <-chan struct{}
}

func startReplica(t *testing.T, ctx context.Context, c *redisstore.Client, src fanout.VersionSource, every time.Duration, topic string) *replica {
	t.Helper()
	b, err := fanout.New(fanout.Options{Source: src, Transport: c.Bus(), PollInterval: every})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{bus: b, calls: make(chan time.Time, 1024)}
	r.done = b.Watch(ctx, topic, func(int64) { r.calls <- time.Now() })
	return r
}

// TestBusFanoutLatency: three replicas see a Publish through Redis; the
// poll interval is long, so only pub/sub can deliver it in time.
func TestBusFanoutLatency(t *testing.T) {
	o := testOptions(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &counterSource{}
	var rs []*replica
	for range 3 {
		rs = append(rs, startReplica(t, ctx, open(t, o), src, time.Hour, fanout.TopicTokens))
	}
	for i := 0; subscribers(t, o.KeyPrefix, fanout.TopicTokens) < 3; i++ {
		if i > 500 {
			t.Fatal("the replicas did not subscribe")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pub, err := fanout.New(fanout.Options{Source: src, Transport: open(t, o).Bus()})
	if err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	for trial := range 100 {
		src.bump(fanout.TopicTokens) // the committed write
		start := time.Now()
		if err := pub.Publish(ctx, fanout.TopicTokens); err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			select {
			case at := <-r.calls:
				lat = append(lat, at.Sub(start))
			case <-time.After(2 * time.Second):
				t.Fatalf("trial %d: replica %d did not see the publish", trial, i)
			}
		}
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("publish to 3 replicas' fn, 100 trials: p50 %v, p99 %v, max %v", p50, p99, lat[len(lat)-1])
	if p99 >= time.Second {
		t.Fatalf("p99 %v, want under 1 s", p99)
	}
	// No replica was called more than once per publish.
	time.Sleep(50 * time.Millisecond)
	for i, r := range rs {
		if n := len(r.calls); n != 0 {
			t.Errorf("replica %d: %d extra calls", i, n)
		}
	}
	cancel()
	for _, r := range rs {
		<-r.done
	}
}

// TestBusRedisDownPolls: the replicas' Redis is broken (a server that
// hangs up); a change committed to the source still reaches each within
// the poll interval, and the broken subscription backs off instead of
// spinning.
func TestBusRedisDownPolls(t *testing.T) {
	o := testOptions(t)
	addr, accepts := hangUp(t)
	o.Addr = addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &counterSource{}
	const every = 200 * time.Millisecond
	var rs []*replica
	var clients []*redisstore.Client
	for range 3 {
		c, err := redisstore.New(o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
		rs = append(rs, startReplica(t, ctx, c, src, every, fanout.TopicKillSwitch))
	}
	start := time.Now()
	for trial := range 3 {
		src.bump(fanout.TopicKillSwitch)
		// Publish fails (Redis is down); the caller logs and carries on.
		if err := rs[0].bus.Publish(ctx, fanout.TopicKillSwitch); err == nil {
			t.Fatal("publish to a broken Redis succeeded")
		}
		bumped := time.Now()
		for i, r := range rs {
			select {
			case at := <-r.calls:
				if d := at.Sub(bumped); d > every+300*time.Millisecond {
					t.Errorf("trial %d: replica %d saw the bump after %v (interval %v)", trial, i, d, every)
				}
			case <-time.After(every + time.Second):
				t.Fatalf("trial %d: replica %d did not see the bump", trial, i)
			}
		}
	}
	time.Sleep(time.Second)
	el := time.Since(start)
	// Backoff 100 ms doubling: at most ~log2(el/100ms)+2 subscription
	// attempts per replica (each maybe a retried dial), plus publishes.
	if n := accepts.Load(); n == 0 || n > 3*2*8+6 {
		t.Fatalf("%d connections to the broken Redis in %v", n, el)
	}
	if n := src.reads.Load(); n > 3*(int64(el/every)+3) {
		t.Fatalf("%d source reads in %v for 3 replicas polling every %v", n, el, every)
	}
	for i, c := range clients {
		if st := c.Status(ctx, redisstore.StatusOptions{RatesShared: true, Poll: every}); st.Up || st.Revocation != "revocation: polling PostgreSQL every 200ms" {
			t.Errorf("replica %d status %q", i, st)
		}
	}
	t.Logf("%v down: %d connections tried, %d source reads", el, accepts.Load(), src.reads.Load())
	cancel()
	for _, r := range rs {
		<-r.done
	}
}

// TestBusPublishDown: Publish to a closed port fails fast, then with
// ErrDown until the next probe.
func TestBusPublishDown(t *testing.T) {
	c := broken(t, testOptions(t))
	b := c.Bus()
	if err := b.Publish(context.Background(), "t"); err == nil || errors.Is(err, redisstore.ErrDown) {
		t.Fatalf("first publish: %v", err)
	}
	if err := b.Publish(context.Background(), "t"); !errors.Is(err, redisstore.ErrDown) {
		t.Fatalf("second publish: %v", err)
	}
}

// TestBusStopsOnCancel: the subscriptions and pollers end with ctx, with
// Redis up and with Redis down.
func TestBusStopsOnCancel(t *testing.T) {
	o := testOptions(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	src := &counterSource{}
	up, err := redisstore.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	bo := o
	bo.Addr = closedAddr(t)
	down, err := redisstore.New(bo)
	if err != nil {
		t.Fatal(err)
	}
	var rs []*replica
	for _, c := range []*redisstore.Client{up, up, down} {
		for _, topic := range []string{fanout.TopicTokens, fanout.TopicVault} {
			rs = append(rs, startReplica(t, ctx, c, src, 50*time.Millisecond, topic))
		}
	}
	for i := 0; subscribers(t, o.KeyPrefix, fanout.TopicVault) < 2; i++ {
		if i > 500 {
			t.Fatal("the replicas did not subscribe")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	for i, r := range rs {
		select {
		case <-r.done:
		case <-time.After(3 * time.Second):
			t.Fatalf("watch %d did not stop", i)
		}
	}
	_ = up.Close()
	_ = down.Close()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before+1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+1 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
