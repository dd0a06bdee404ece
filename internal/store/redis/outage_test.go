package redisstore_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/fanout"
	"github.com/keystile/keystile/internal/policy"
	redisstore "github.com/keystile/keystile/internal/store/redis"
)

// cutProxy forwards loopback connections to the test Redis until cut:
// then it closes every connection and refuses new ones, as a Redis outage
// looks to the replicas behind it, while the shared server and the other
// tests carry on. restore ends the outage.
type cutProxy struct {
	l      net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func newCutProxy(t *testing.T) *cutProxy {
	t.Helper()
	u, err := url.Parse(os.Getenv("KEYSTILE_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: u.Host, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { _ = l.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

func (p *cutProxy) serve() {
	for {
		cn, err := p.l.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			_ = cn.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = cn.Close()
			continue
		}
		p.mu.Lock()
		p.conns[cn], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(cn, up)
		go p.pipe(up, cn)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *cutProxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for cn := range p.conns {
		_ = cn.Close()
	}
}

func (p *cutProxy) restore() { p.down.Store(false) }

// TestOutageAndRecovery: a replica whose Redis goes away and comes back.
// Rate limits fail closed during the outage and are shared again after it;
// revocations reach it by polling during the outage and by pub/sub after;
// its status follows.
func TestOutageAndRecovery(t *testing.T) {
	o := testOptions(t)
	p := newCutProxy(t)
	po := o
	po.Addr = p.addr()
	c := open(t, po)
	direct := open(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	e := engine(t, c, policy.RatesFallback{Mode: policy.FallbackFailClosed})
	src := &counterSource{}
	const every = 300 * time.Millisecond
	r := startReplica(t, ctx, c, src, every, fanout.TopicTokens)
	for i := 0; subscribers(t, o.KeyPrefix, fanout.TopicTokens) < 1; i++ {
		if i > 500 {
			t.Fatal("the replica did not subscribe")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pub, err := fanout.New(fanout.Options{Source: src, Transport: direct.Bus()})
	if err != nil {
		t.Fatal(err)
	}
	status := func() redisstore.Status {
		return c.Status(ctx, redisstore.StatusOptions{RatesShared: true, Poll: every})
	}
	if d := req(e, "one", "tok_o", "acct", false); !d.Allow {
		t.Fatalf("before the outage: %+v", d)
	}
	if st := status(); !st.Up {
		t.Fatalf("before the outage: %s", st)
	}

	p.cut()
	cutAt := time.Now()
	if d := req(e, "one", "tok_o", "acct", false); d.Allow || d.Rule != policy.RuleRateUnavailable || d.Status != http.StatusServiceUnavailable {
		t.Fatalf("during the outage: %+v", d)
	}
	if st := status(); st.Up || st.String() != "redis: down since "+st.DownSince.UTC().Format(time.RFC3339)+", rate limits: fail_closed, revocation: polling PostgreSQL every 300ms" {
		t.Fatalf("during the outage: %s", st)
	}
	// A revocation during the outage: the publish is lost to this
	// replica, the poll finds it.
	src.bump(fanout.TopicTokens)
	bumped := time.Now()
	if err := pub.Publish(ctx, fanout.TopicTokens); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-r.calls:
		if d := at.Sub(bumped); d > every+300*time.Millisecond {
			t.Errorf("revocation seen by polling after %v (interval %v)", d, every)
		}
	case <-time.After(every + 2*time.Second):
		t.Fatal("revocation during the outage not seen")
	}
	time.Sleep(time.Second - time.Since(cutAt))

	p.restore()
	restored := time.Now()
	// Rate limits: shared again after the next probe (at most 500 ms).
	for {
		d := req(e, "one", "tok_o", "acct", false)
		if d.Allow {
			break
		}
		if d.Rule != policy.RuleRateUnavailable || time.Since(restored) > 3*time.Second {
			t.Fatalf("after the outage: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("rate limits shared again %v after Redis came back", time.Since(restored).Round(time.Millisecond))
	if st := status(); !st.Up || st.String() != "redis: ok, rate limits: shared in Redis, revocation: Redis pub/sub and polling PostgreSQL every 300ms" {
		t.Fatalf("after the outage: %s", st)
	}
	// Pub/sub again: a publish that does not bump the source (so polling
	// cannot be what calls fn) reaches the replica once it resubscribed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pub.Publish(ctx, fanout.TopicTokens); err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.calls:
			t.Logf("pub/sub delivers again %v after Redis came back", time.Since(restored).Round(time.Millisecond))
			cancel()
			<-r.done
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no pub/sub delivery 10 s after Redis came back")
		}
	}
}
