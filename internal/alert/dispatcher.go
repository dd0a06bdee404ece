package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/logging"
)

// Sink delivers messages to one destination (a webhook receiver, a Slack
// channel, a Telegram chat, an ntfy topic, a mailbox).
//
// Deliver sends a once and returns nil when the destination accepted it.
// It must respect ctx (the Dispatcher bounds every attempt with the sink's
// timeout). A failure is returned as a *DeliveryError (Permanent when a
// retry cannot help, RetryAfter when the destination asked for a delay);
// any other error is treated as temporary. Errors must not contain
// credentials or a URL that holds one. a has already been scrubbed; a
// Deliver must not modify it. Deliver is called by one worker at a time
// per sink, and concurrently by Test: it must be safe for concurrent use.
type Sink interface {
	Deliver(ctx context.Context, a *Alert) error
}

// SinkConfig is one configured sink.
type SinkConfig struct {
	// Name identifies the sink (status, Test, digest store). Required, unique.
	Name string
	// Type is the sink's kind, for status ("webhook", "slack", ...).
	Type string
	// Sink delivers. Required.
	Sink Sink
	// MinSeverity: alerts below it are not sent to this sink. Zero: all.
	MinSeverity Severity
	// Timeout bounds one delivery attempt. Zero: 10s.
	Timeout time.Duration
	// Digest, if set, batches alerts up to Digest.MaxSeverity into one
	// message a day.
	Digest *Schedule
}

// Retry configures redelivery with jittered exponential backoff
// (github.com/cenkalti/backoff/v5: each wait is the interval ±50%, the
// interval doubling from InitialBackoff up to MaxBackoff).
type Retry struct {
	// MaxAttempts counts the first try. Zero: 6.
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the waits. Zero: 1s and 1m.
	InitialBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps the delay a sink may ask for. Zero: 5m.
	MaxRetryAfter time.Duration
}

// Policy is the Dispatcher's behaviour; zero fields mean the defaults.
type Policy struct {
	// DedupeWindow: after an alert for a (detector, subject) goes out,
	// repeats within the window are folded into one later message. Zero:
	// no deduplication.
	DedupeWindow time.Duration
	// RateCount messages per RatePer at most, per (detector, subject);
	// zero: no limit.
	RateCount int
	RatePer   time.Duration
	// QueueSize bounds the routing queue and each sink's queue. Zero:
	// 1024. It applies when the Dispatcher or a sink is created.
	QueueSize int
	// Retry configures redelivery.
	Retry Retry
}

func (p Policy) withDefaults() Policy {
	if p.QueueSize <= 0 {
		p.QueueSize = 1024
	}
	if p.Retry.MaxAttempts <= 0 {
		p.Retry.MaxAttempts = 6
	}
	if p.Retry.InitialBackoff <= 0 {
		p.Retry.InitialBackoff = time.Second
	}
	if p.Retry.MaxBackoff <= 0 {
		p.Retry.MaxBackoff = time.Minute
	}
	p.Retry.MaxBackoff = max(p.Retry.MaxBackoff, p.Retry.InitialBackoff)
	if p.Retry.MaxRetryAfter <= 0 {
		p.Retry.MaxRetryAfter = 5 * time.Minute
	}
	if p.RateCount <= 0 || p.RatePer <= 0 {
		p.RateCount, p.RatePer = 0, 0
	}
	p.DedupeWindow = max(p.DedupeWindow, 0)
	return p
}

// Options configure New.
type Options struct {
	Policy Policy
	Sinks  []SinkConfig
	// Store keeps pending digest items. If nil, a MemoryStore (lost on
	// restart).
	Store DigestStore
	// Scrubber cleans every text field. If nil, only kst_ tokens are
	// masked: the server passes its logging.Redactor.
	Scrubber Scrubber
	// Logger; if nil, discard.
	Logger *slog.Logger
	// Now is the clock; if nil, time.Now.
	Now func() time.Time
}

// maxGates bounds the (detector, subject) pairs tracked for
// deduplication; beyond it, alerts of new pairs go out undeduplicated.
const maxGates = 50000

// Dispatcher delivers alerts to every configured sink in the background.
// All methods are safe for concurrent use.
type Dispatcher struct {
	log   *slog.Logger
	now   func() time.Time
	sc    Scrubber
	store DigestStore

	in     chan Alert
	policy atomic.Pointer[Policy]
	lanes  atomic.Pointer[[]*lane]

	mu     sync.RWMutex // guards closed against Send, and lane changes
	closed bool
	byName map[string]*lane

	ingressDropped atomic.Uint64
	folded         atomic.Uint64
	recent         recent // the last alerts sent (Recent)
	held           atomic.Int64

	// gates is owned by the router goroutine.
	gates     map[string]*gate
	nextFlush time.Time

	ctx      context.Context // deliveries; cancelled when Close gives up
	cancel   context.CancelFunc
	stop     chan struct{}
	routerWG sync.WaitGroup
	laneWG   sync.WaitGroup
}

// New validates o, starts the router and one worker per sink, and returns
// the Dispatcher. Close stops it.
func New(o Options) (*Dispatcher, error) {
	if err := checkSinks(o.Sinks); err != nil {
		return nil, err
	}
	d := &Dispatcher{log: o.Logger, now: o.Now, sc: o.Scrubber, store: o.Store, byName: map[string]*lane{},
		gates: map[string]*gate{}, stop: make(chan struct{})}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.sc == nil {
		d.sc = (*logging.Redactor)(nil)
	}
	if d.store == nil {
		d.store = NewMemoryStore()
	}
	p := o.Policy.withDefaults()
	d.policy.Store(&p)
	d.in = make(chan Alert, p.QueueSize)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	lanes := make([]*lane, 0, len(o.Sinks))
	for _, c := range o.Sinks {
		l := d.newLane(c, p.QueueSize)
		d.byName[c.Name] = l
		lanes = append(lanes, l)
	}
	d.lanes.Store(&lanes)
	for _, l := range lanes {
		d.startLane(l)
	}
	d.routerWG.Add(1)
	go d.route()
	return d, nil
}

func checkSinks(sinks []SinkConfig) error {
	seen := map[string]bool{}
	for i, c := range sinks {
		switch {
		case c.Name == "":
			return fmt.Errorf("alert: sink %d: empty name", i)
		case seen[c.Name]:
			return fmt.Errorf("alert: sink %q: duplicate name", c.Name)
		case c.Sink == nil:
			return fmt.Errorf("alert: sink %q: no Sink", c.Name)
		case c.MinSeverity != 0 && !c.MinSeverity.Valid():
			return fmt.Errorf("%w: sink %q", ErrSeverity, c.Name)
		case c.Digest != nil && !c.Digest.MaxSeverity.Valid():
			return fmt.Errorf("%w: sink %q digest", ErrSeverity, c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

// Send queues a for every sink and returns at once; it never blocks. Text
// fields are scrubbed and bounded here, before anything else sees them.
// It returns false when the alert was dropped (the queue is full, or the
// Dispatcher is closed); a drop is counted and reported to each sink when
// its delivery recovers.
func (d *Dispatcher) Send(a Alert) bool {
	n := normalize(a, d.sc, d.now())
	n.Kind = KindAlert
	d.recent.add(n)
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		d.ingressDropped.Add(1)
		return false
	}
	select {
	case d.in <- n:
		return true
	default:
		d.ingressDropped.Add(1)
		return false
	}
}

// Reconfigure replaces the sinks and the policy. Sinks whose name stays
// keep their queue, counters and pending digest; a removed sink's queued
// alerts are discarded (and logged). QueueSize applies to new sinks only.
func (d *Dispatcher) Reconfigure(sinks []SinkConfig, p Policy) error {
	if err := checkSinks(sinks); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	p = p.withDefaults()
	d.policy.Store(&p)
	next := make([]*lane, 0, len(sinks))
	keep := map[string]bool{}
	var started []*lane
	for _, c := range sinks {
		keep[c.Name] = true
		if l, ok := d.byName[c.Name]; ok {
			cc := c
			l.cfg.Store(&cc)
			select {
			case l.reconf <- struct{}{}:
			default:
			}
			next = append(next, l)
			continue
		}
		l := d.newLane(c, p.QueueSize)
		d.byName[c.Name] = l
		next = append(next, l)
		started = append(started, l)
	}
	var removed []*lane
	for name, l := range d.byName {
		if !keep[name] {
			removed = append(removed, l)
			delete(d.byName, name)
		}
	}
	d.lanes.Store(&next)
	for _, l := range started {
		d.startLane(l)
	}
	for _, l := range removed {
		l.discard.Store(true)
		close(l.stop)
	}
	return nil
}

// Close stops intake, flushes the alerts held by deduplication, and
// delivers what is queued until ctx ends; deliveries still running then
// are cancelled and what is left is counted as dropped. Pending digest
// items stay in the store. Close is idempotent.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	lanes := *d.lanes.Load()
	d.mu.Unlock()
	close(d.stop)
	d.routerWG.Wait()
	for _, l := range lanes {
		close(l.stop)
	}
	done := make(chan struct{})
	go func() {
		d.laneWG.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("alert: close: %w", ctx.Err())
		d.cancel()
		<-done
	}
	d.cancel()
	return err
}

// route is the router goroutine: it applies deduplication and rate limits
// and hands alerts to the sinks' queues without ever blocking.
func (d *Dispatcher) route() {
	defer d.routerWG.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case a := <-d.in:
			d.admit(a)
		case <-t.C:
			if now := d.now(); !d.nextFlush.IsZero() && !now.Before(d.nextFlush) {
				d.flush(now, false)
			}
		case <-d.stop:
			for drained := false; !drained; {
				select {
				case a := <-d.in:
					d.admit(a)
				default:
					drained = true
				}
			}
			d.flush(d.now(), true)
			return
		}
	}
}

// dispatch offers a to every sink's queue.
func (d *Dispatcher) dispatch(a Alert) {
	for _, l := range *d.lanes.Load() {
		l.offer(a)
	}
}

// Test sends a test alert to the named sink, or to every sink when name
// is "", once (no retry, no deduplication, no digest), and reports each
// outcome. Sinks are tried concurrently, each within its timeout.
func (d *Dispatcher) Test(ctx context.Context, name string) ([]TestResult, error) {
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return nil, ErrClosed
	}
	lanes := *d.lanes.Load()
	d.mu.RUnlock()
	if name != "" {
		var sel []*lane
		for _, l := range lanes {
			if l.name == name {
				sel = append(sel, l)
			}
		}
		if len(sel) == 0 {
			return nil, fmt.Errorf("%w: %q", ErrUnknownSink, name)
		}
		lanes = sel
	}
	out := make([]TestResult, len(lanes))
	var wg sync.WaitGroup
	for i, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := l.cfg.Load()
			a := normalize(Alert{
				Kind: KindTest, Detector: DetectorTest, Severity: SeverityInfo,
				Summary:  fmt.Sprintf("Test alert from keystile to sink %s: if you can read this, the sink works.", l.name),
				Evidence: []Field{{Key: "sink", Value: l.name}, {Key: "sink_type", Value: c.Type}},
			}, d.sc, d.now())
			start := time.Now()
			actx, cancel := context.WithTimeout(ctx, timeoutOf(c))
			err := c.Sink.Deliver(actx, &a)
			cancel()
			r := TestResult{Sink: l.name, Type: c.Type, OK: err == nil, AlertID: a.ID, Millis: time.Since(start).Milliseconds()}
			if err != nil {
				r.Error = d.sc.ScrubString(err.Error())
				d.log.Warn("alert: test delivery failed", "sink", l.name, "alert_id", a.ID, "err", err)
			}
			out[i] = r
		}()
	}
	wg.Wait()
	return out, nil
}

// TestResult is the outcome of Test for one sink.
type TestResult struct {
	Sink    string `json:"sink"`
	Type    string `json:"type"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	AlertID string `json:"alert_id"`
	Millis  int64  `json:"millis"`
}

func timeoutOf(c *SinkConfig) time.Duration {
	if c.Timeout <= 0 {
		return 10 * time.Second
	}
	return c.Timeout
}

// Status describes the Dispatcher and its sinks.
type Status struct {
	// Queued alerts wait to be routed; QueueCapacity bounds them.
	Queued        int `json:"queued"`
	QueueCapacity int `json:"queue_capacity"`
	// Dropped counts alerts refused by Send (queue full or closed).
	Dropped uint64 `json:"dropped"`
	// Folded counts alerts held back by deduplication or rate limits
	// (each is counted in a later message); Held are waiting now.
	Folded uint64 `json:"folded"`
	Held   int64  `json:"held"`
	// DedupeWindow and RateLimit are the policy in force.
	DedupeWindow string       `json:"dedupe_window"`
	RateLimit    string       `json:"rate_limit"`
	Sinks        []SinkStatus `json:"sinks"`
}

// SinkStatus describes one sink.
type SinkStatus struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	MinSeverity string `json:"min_severity"`
	// Healthy is false when the sink's last delivery failed.
	Healthy bool `json:"healthy"`
	Queued  int  `json:"queued"`
	// Delivered, Failed (given up after retries), Dropped (its queue or
	// digest store was full), Retries and Digested (put in the digest)
	// count since start.
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
	Retries   uint64 `json:"retries"`
	Digested  uint64 `json:"digested"`
	// LastDelivery and LastFailure are the times of the last success and
	// failure; LastError is the last failure's cause (scrubbed).
	LastDelivery time.Time     `json:"last_delivery,omitzero"`
	LastFailure  time.Time     `json:"last_failure,omitzero"`
	LastError    string        `json:"last_error,omitempty"`
	Digest       *DigestStatus `json:"digest,omitempty"`
}

// DigestStatus describes a sink's digest.
type DigestStatus struct {
	Schedule    string    `json:"schedule"`
	MaxSeverity string    `json:"max_severity"`
	Pending     int       `json:"pending"`
	Oldest      time.Time `json:"oldest,omitzero"`
	Next        time.Time `json:"next,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// Status reports queue depths and per-sink counters.
func (d *Dispatcher) Status(ctx context.Context) Status {
	p := d.policy.Load()
	st := Status{Queued: len(d.in), QueueCapacity: cap(d.in), Dropped: d.ingressDropped.Load(), Folded: d.folded.Load(),
		Held: d.held.Load(), DedupeWindow: p.DedupeWindow.String(), RateLimit: "none", Sinks: []SinkStatus{}}
	if p.RateCount > 0 {
		st.RateLimit = fmt.Sprintf("%d per %s", p.RateCount, p.RatePer)
	}
	for _, l := range *d.lanes.Load() {
		st.Sinks = append(st.Sinks, l.status(ctx))
	}
	sort.Slice(st.Sinks, func(i, j int) bool { return st.Sinks[i].Name < st.Sinks[j].Name })
	return st
}

// errRetryAfter carries a sink's error and the delay it asked for.
type errRetryAfter struct {
	err   error
	delay error
}

func (e *errRetryAfter) Error() string   { return e.err.Error() }
func (e *errRetryAfter) Unwrap() []error { return []error{e.err, e.delay} }

func isPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}
