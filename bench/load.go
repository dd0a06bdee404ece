package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// request is the one request a step sends, again and again.
type request struct {
	method, url string
	body        []byte
	header      http.Header
	// idemPrefix, if set, gives each request a unique Idempotency-Key
	// (idemPrefix + a sequence number).
	idemPrefix string
}

// target is where a step sends its requests.
type target struct {
	req    request
	client *http.Client
	seq    *atomic.Int64 // shared by every step of a run: idempotency keys never repeat
	// urls, if set, replace req.url: request n goes to urls[n mod
	// len(urls)] (round-robin across replicas, as a load balancer).
	urls []string
	rr   *atomic.Uint64
}

// do sends one request and reads the whole answer. A non-2xx answer is an
// error.
func (t *target) do(ctx context.Context) error {
	var body io.Reader
	if t.req.body != nil {
		body = bytes.NewReader(t.req.body)
	}
	u := t.req.url
	if len(t.urls) > 0 {
		u = t.urls[(t.rr.Add(1)-1)%uint64(len(t.urls))]
	}
	req, err := http.NewRequestWithContext(ctx, t.req.method, u, body)
	if err != nil {
		return err
	}
	for k, v := range t.req.header {
		req.Header[k] = v
	}
	if t.req.idemPrefix != "" {
		req.Header.Set("Idempotency-Key", t.req.idemPrefix+strconv.FormatInt(t.seq.Add(1), 10))
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		if len(b) > 160 {
			b = b[:160]
		}
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// loadResult is what one load step measured.
type loadResult struct {
	hist     histogram // latency of successful requests
	lag      histogram // open loop: how late the generator released each request
	ok       int64
	errors   int64
	dropped  int64 // open loop: requests not sent (backlog full, or still queued at the step's cutoff)
	late     int64 // open loop: requests that started > lateAfter after their scheduled time
	elapsed  time.Duration
	firstErr string
}

// lateAfter is how far behind schedule a send may start before it counts
// as late (a worker pool that cannot keep up).
const lateAfter = time.Millisecond

type workerStats struct {
	hist        histogram
	ok, errs    int64
	late        int64
	dropped     int64
	firstErr    error
	firstErrSet bool
}

func (w *workerStats) result(err error, lat time.Duration) {
	if err != nil {
		w.errs++
		if !w.firstErrSet {
			w.firstErr, w.firstErrSet = err, true
		}
		return
	}
	w.ok++
	w.hist.record(lat)
}

func mergeWorkers(ws []*workerStats, r *loadResult) {
	for _, w := range ws {
		r.hist.merge(&w.hist)
		r.ok += w.ok
		r.errors += w.errs
		r.late += w.late
		r.dropped += w.dropped
		if w.firstErrSet && r.firstErr == "" {
			r.firstErr = w.firstErr.Error()
		}
	}
}

// closedLoop runs workers clients, each sending its next request as soon
// as the previous answer is read, for d: the saturation throughput.
func closedLoop(ctx context.Context, t *target, workers int, d time.Duration) *loadResult {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	ws := make([]*workerStats, workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range ws {
		ws[i] = &workerStats{}
		wg.Add(1)
		go func(w *workerStats) {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				err := t.do(ctx)
				w.result(err, time.Since(t0))
			}
		}(ws[i])
	}
	wg.Wait()
	r := &loadResult{elapsed: time.Since(start)}
	mergeWorkers(ws, r)
	return r
}

// openLoop offers rate requests per second for d, on a fixed schedule
// that does not wait for answers. A pool of workers sends them; when every
// worker is busy, scheduled requests queue (up to backlog) and their wait
// counts in their latency, which is measured from the scheduled time (so
// a slow server cannot hide its queueing: no coordinated omission).
// Requests that find the backlog full are dropped and counted.
func openLoop(ctx context.Context, t *target, rate float64, workers int, d time.Duration) *loadResult {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	n := int64(rate * d.Seconds())
	backlog := max(workers*16, 1024)
	queue := make(chan time.Time, backlog)
	r := &loadResult{}
	start := time.Now().Add(2 * time.Millisecond)
	interval := float64(time.Second) / rate
	// Requests still queued this long after the schedule ends are dropped
	// instead of sent, so that an overloaded system cannot stretch a step.
	cutoff := start.Add(d + max(d/2, 500*time.Millisecond))

	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		defer close(queue)
		// A thread of its own with a fine timer slack: time.Sleep has about
		// 1 ms granularity, nanosleep on this thread tens of µs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
		defer func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, 0, 0, 0, 0) }() // back to the thread's default
		for i := int64(0); i < n && ctx.Err() == nil; i++ {
			due := start.Add(time.Duration(float64(i) * interval))
			sleepUntil(due)
			r.lag.record(time.Since(due))
			select {
			case queue <- due:
			default:
				r.dropped++
			}
		}
	}()

	ws := make([]*workerStats, workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = &workerStats{}
		wg.Add(1)
		go func(w *workerStats) {
			defer wg.Done()
			for due := range queue {
				if time.Now().After(cutoff) {
					w.dropped++ // never sent: the system fell too far behind the schedule
					continue
				}
				if time.Since(due) > lateAfter {
					w.late++
				}
				err := t.do(ctx)
				w.result(err, time.Since(due))
			}
		}(ws[i])
	}
	wg.Wait()
	<-schedDone
	r.elapsed = time.Since(start)
	mergeWorkers(ws, r)
	return r
}

// sleepUntil sleeps until due: long waits through the runtime's timers
// (about 1 ms granularity), the last stretch with nanosleep on the calling
// (locked) thread.
func sleepUntil(due time.Time) {
	for {
		d := time.Until(due)
		if d <= 0 {
			return
		}
		if d > 3*time.Millisecond {
			time.Sleep(d - 2*time.Millisecond)
			continue
		}
		ts := unix.NsecToTimespec(int64(d))
		for {
			var rem unix.Timespec
			if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
				return
			}
			ts = rem
		}
	}
}
