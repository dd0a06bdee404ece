package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Intervals of a sink worker.
const (
	// lossProbe is how often an unhealthy sink is sent the report of lost
	// alerts (one attempt each time); a healthy one gets it at once.
	lossProbe = 30 * time.Second
	// digestRetry is how soon a digest that could not be delivered is
	// tried again.
	digestRetry = 15 * time.Minute
	// storeTimeout bounds each digest-store operation.
	storeTimeout = 10 * time.Second
)

// lane is one sink: its queue, its worker and its counters.
type lane struct {
	d       *Dispatcher
	name    string
	cfg     atomic.Pointer[SinkConfig]
	q       chan Alert
	reconf  chan struct{}
	stop    chan struct{}
	discard atomic.Bool // removed by Reconfigure: drop what is queued

	delivered, failed, dropped, retries, digested atomic.Uint64

	mu         sync.Mutex
	lastOK     time.Time
	lastFail   time.Time
	lastErr    string
	healthy    bool
	nextDigest time.Time

	// Worker-owned: losses not yet reported to this sink.
	ingressSeen     uint64
	droppedReported uint64
	failedPending   uint64
	lossSince       time.Time
	lastLossTry     time.Time
	digestTimer     *time.Timer
}

func (d *Dispatcher) newLane(c SinkConfig, size int) *lane {
	l := &lane{d: d, name: c.Name, q: make(chan Alert, size), reconf: make(chan struct{}, 1), stop: make(chan struct{}), healthy: true}
	l.cfg.Store(&c)
	l.ingressSeen = d.ingressDropped.Load()
	return l
}

func (d *Dispatcher) startLane(l *lane) {
	d.laneWG.Add(1)
	go l.run()
}

// offer queues a for this sink unless it is below the sink's minimum
// severity; a full queue drops it (counted).
func (l *lane) offer(a Alert) {
	if c := l.cfg.Load(); c.MinSeverity.Valid() && a.Severity < c.MinSeverity {
		return
	}
	select {
	case l.q <- a:
	default:
		l.dropped.Add(1)
	}
}

func (l *lane) run() {
	defer l.d.laneWG.Done()
	l.digestTimer = time.NewTimer(time.Hour)
	l.digestTimer.Stop()
	defer l.digestTimer.Stop()
	l.scheduleDigest(true)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case a := <-l.q:
			l.handle(&a)
		case <-l.digestTimer.C:
			l.runDigest()
		case <-tick.C:
			l.reportLosses(false)
		case <-l.reconf:
			l.scheduleDigest(true)
		case <-l.stop:
			l.drain()
			return
		}
	}
}

// drain handles what is queued at Close (or discards it when the sink was
// removed); once the Dispatcher gives up (ctx cancelled), the rest is
// counted as dropped.
func (l *lane) drain() {
	for {
		select {
		case a := <-l.q:
			if l.discard.Load() || l.d.ctx.Err() != nil {
				l.dropped.Add(1)
				continue
			}
			l.handle(&a)
		default:
			if n := l.dropped.Load() - l.droppedReported; n > 0 && l.discard.Load() {
				l.d.log.Warn("alert: sink removed; its queued alerts were discarded", "sink", l.name, "discarded", n)
			}
			return
		}
	}
}

func (l *lane) handle(a *Alert) {
	c := l.cfg.Load()
	if c.Digest != nil && a.Kind == KindAlert && a.Severity <= c.Digest.MaxSeverity {
		ctx, cancel := context.WithTimeout(l.d.ctx, storeTimeout)
		err := l.d.store.AddDigest(ctx, l.name, *a)
		cancel()
		if err != nil {
			l.dropped.Add(1)
			l.d.log.Warn("alert: keep digest item", "sink", l.name, "alert_id", a.ID, "err", err)
			return
		}
		l.digested.Add(1)
		return
	}
	if l.deliver(c, a) == nil {
		l.reportLosses(true)
	}
}

// deliver sends a with retries and records the outcome.
func (l *lane) deliver(c *SinkConfig, a *Alert) error {
	r := l.d.policy.Load().Retry
	err := l.attempts(c, a, r.MaxAttempts, r)
	if err != nil {
		l.failed.Add(1)
		l.failedPending++
		if l.lossSince.IsZero() {
			l.lossSince = l.d.now()
		}
		l.d.log.Warn("alert: delivery failed", "sink", l.name, "alert_id", a.ID, "detector", a.Detector, "err", err)
	}
	return err
}

// attempts tries to deliver a up to n times with jittered exponential
// backoff; every attempt carries the same alert (the same id).
func (l *lane) attempts(c *SinkConfig, a *Alert, n int, r Retry) error {
	b := &backoff.ExponentialBackOff{
		InitialInterval: r.InitialBackoff, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: r.MaxBackoff,
	}
	tries := 0
	_, err := backoff.Retry(l.d.ctx, func() (struct{}, error) {
		tries++
		if tries > 1 {
			l.retries.Add(1)
		}
		err := l.once(c, a)
		if err == nil {
			return struct{}{}, nil
		}
		var de *DeliveryError
		switch {
		case isPermanent(err):
			return struct{}{}, backoff.Permanent(err)
		case errors.As(err, &de) && de.RetryAfter > 0:
			return struct{}{}, &errRetryAfter{err: err, delay: &backoff.RetryAfterError{Duration: min(de.RetryAfter, r.MaxRetryAfter)}}
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(max(n, 1))), backoff.WithMaxElapsedTime(0)) // #nosec G115 -- n >= 1
	var ra *errRetryAfter
	if errors.As(err, &ra) {
		err = ra.err
	}
	return err
}

// once makes one attempt within the sink's timeout and records it.
func (l *lane) once(c *SinkConfig, a *Alert) error {
	ctx, cancel := context.WithTimeout(l.d.ctx, timeoutOf(c))
	err := c.Sink.Deliver(ctx, a)
	cancel()
	now := l.d.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.delivered.Add(1)
		l.lastOK, l.healthy = now, true
		return nil
	}
	l.lastFail, l.healthy = now, false
	l.lastErr = l.d.sc.ScrubString(err.Error())
	return err
}

func (l *lane) isHealthy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.healthy
}

// reportLosses tells the sink how many alerts it lost (dropped on a full
// queue, refused by Send, or given up after retries) since the last
// report: right after a delivery succeeds, on the worker's tick while the
// sink is healthy, and every lossProbe while it is not. One attempt each
// time; the counts stay until a report is delivered.
func (l *lane) reportLosses(afterSuccess bool) {
	ingress := l.d.ingressDropped.Load()
	dropped := l.dropped.Load()
	nIngress, nDropped, nFailed := ingress-l.ingressSeen, dropped-l.droppedReported, l.failedPending
	if nIngress+nDropped+nFailed == 0 {
		return
	}
	now := l.d.now()
	if l.lossSince.IsZero() {
		l.lossSince = now
	}
	if !afterSuccess && !l.isHealthy() && now.Sub(l.lastLossTry) < lossProbe {
		return
	}
	l.lastLossTry = now
	c := l.cfg.Load()
	a := normalize(Alert{
		Kind: KindDropped, Detector: DetectorDropped, Severity: SeverityHigh,
		Summary: fmt.Sprintf("keystile lost %d alert%s for sink %s since %s: %d dropped because a queue was full, %d not delivered after retries. Check `keystile alert status` and the server log.",
			nIngress+nDropped+nFailed, plural(int(nIngress+nDropped+nFailed)), l.name, l.lossSince.UTC().Format(time.RFC3339), nIngress+nDropped, nFailed), // #nosec G115 -- counts are small
		Evidence: []Field{
			{Key: "dropped_queue_full", Value: fmt.Sprint(nIngress + nDropped)},
			{Key: "failed_after_retries", Value: fmt.Sprint(nFailed)},
			{Key: "since", Value: l.lossSince.UTC().Format(time.RFC3339)},
		},
		Action: "keystile alert status",
	}, l.d.sc, now)
	if err := l.once(c, &a); err != nil {
		l.d.log.Warn("alert: report of lost alerts not delivered; will retry", "sink", l.name, "err", err)
		return
	}
	l.ingressSeen, l.droppedReported = ingress, dropped
	l.failedPending -= nFailed
	l.lossSince = time.Time{}
}

// scheduleDigest sets the digest timer: at the next digest time, or at
// once when items are pending that a past digest time should have sent
// (the server was down, or the digest was just configured).
func (l *lane) scheduleDigest(checkMissed bool) {
	c := l.cfg.Load()
	if !l.digestTimer.Stop() {
		select {
		case <-l.digestTimer.C:
		default:
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Digest == nil {
		l.nextDigest = time.Time{}
		return
	}
	now := l.d.now()
	next := c.Digest.Next(now)
	if checkMissed {
		ctx, cancel := context.WithTimeout(l.d.ctx, storeTimeout)
		n, oldest, err := l.d.store.CountDigest(ctx, l.name)
		cancel()
		if err == nil && n > 0 && oldest.Before(c.Digest.Prev(now)) {
			next = now
		}
	}
	l.setDigestTimer(next, now)
}

func (l *lane) setDigestTimer(next, now time.Time) {
	l.nextDigest = next
	l.digestTimer.Reset(max(next.Sub(now), 0))
}

// runDigest sends pending digest items, in batches, as digest messages.
// Items are removed only once their message is delivered; a digest id is
// derived from the items, so a digest re-sent after a crash has the same
// idempotency id.
func (l *lane) runDigest() {
	c := l.cfg.Load()
	if c.Digest == nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.d.ctx, storeTimeout)
	items, err := l.d.store.PendingDigest(ctx, l.name, digestBatch)
	cancel()
	now := l.d.now()
	if err != nil {
		l.d.log.Warn("alert: read digest items", "sink", l.name, "err", err)
		l.mu.Lock()
		l.setDigestTimer(now.Add(digestRetry), now)
		l.mu.Unlock()
		return
	}
	if len(items) == 0 {
		l.mu.Lock()
		l.setDigestTimer(c.Digest.Next(now), now)
		l.mu.Unlock()
		return
	}
	a := digestAlert(l.name, c.Digest, items, now)
	r := l.d.policy.Load().Retry
	if err := l.attempts(c, &a, r.MaxAttempts, r); err != nil {
		// The items stay in the store: nothing is lost, so this is not
		// counted among the losses reported to the sink.
		l.failed.Add(1)
		l.d.log.Warn("alert: digest not delivered; its items are kept and retried", "sink", l.name, "items", len(items), "retry_in", digestRetry, "err", err)
		l.mu.Lock()
		l.setDigestTimer(now.Add(digestRetry), now)
		l.mu.Unlock()
		return
	}
	ctx, cancel = context.WithTimeout(l.d.ctx, storeTimeout)
	err = l.d.store.DeleteDigest(ctx, l.name, items[len(items)-1].Seq)
	cancel()
	if err != nil {
		l.d.log.Warn("alert: remove delivered digest items (they may be sent again)", "sink", l.name, "err", err)
	}
	next := c.Digest.Next(now)
	if len(items) == digestBatch {
		next = now // more waiting: the next batch right away
	}
	l.mu.Lock()
	l.setDigestTimer(next, now)
	l.mu.Unlock()
}

func digestAlert(sink string, s *Schedule, items []DigestItem, now time.Time) Alert {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d", sink, items[0].Seq, items[len(items)-1].Seq)
	sev := SeverityInfo
	total := 0
	a := Alert{
		ID: "dig_" + hex.EncodeToString(h.Sum(nil))[:26], Kind: KindDigest, Time: now.UTC(), Detector: DetectorDigest,
		Count: 1,
	}
	for _, it := range items {
		sev = max(sev, it.Alert.Severity)
		total += it.Alert.Count
		a.Items = append(a.Items, it.Alert)
	}
	a.Severity = sev
	a.Summary = fmt.Sprintf("Digest for sink %s: %d alert%s (%s and lower) since %s; schedule %s.",
		sink, total, plural(total), s.MaxSeverity, items[0].Alert.Time.UTC().Format(time.RFC3339), s)
	return a
}

func (l *lane) status(ctx context.Context) SinkStatus {
	c := l.cfg.Load()
	l.mu.Lock()
	st := SinkStatus{
		Name: l.name, Type: c.Type, MinSeverity: SeverityInfo.String(), Healthy: l.healthy, Queued: len(l.q),
		Delivered: l.delivered.Load(), Failed: l.failed.Load(), Dropped: l.dropped.Load(), Retries: l.retries.Load(),
		Digested: l.digested.Load(), LastDelivery: l.lastOK, LastFailure: l.lastFail, LastError: l.lastErr,
	}
	next := l.nextDigest
	l.mu.Unlock()
	if c.MinSeverity.Valid() {
		st.MinSeverity = c.MinSeverity.String()
	}
	if c.Digest != nil {
		ds := &DigestStatus{Schedule: c.Digest.String(), MaxSeverity: c.Digest.MaxSeverity.String(), Next: next}
		ctx, cancel := context.WithTimeout(ctx, storeTimeout)
		n, oldest, err := l.d.store.CountDigest(ctx, l.name)
		cancel()
		ds.Pending, ds.Oldest = n, oldest
		if err != nil {
			ds.Error = err.Error()
		}
		st.Digest = ds
	}
	return st
}
