package venue

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// BackoffStore keeps venue back-off deadlines that several keystile
// replicas share (internal/store/redis implements it). Publish records that
// the venue pushed back on key until until, keeping a later deadline
// already recorded; Until returns the latest deadline recorded for key (the
// zero time when none is in force). Both are safe for concurrent use and
// fail fast (an error, not a wait) when the store is unreachable.
type BackoffStore interface {
	Publish(ctx context.Context, key string, until time.Time) error
	Until(ctx context.Context, key string) (time.Time, error)
}

// LimitSharer is implemented by venues whose RateLimiter counts keystile's
// own requests against the exchange's published limits (OKX, Coinbase,
// Kraken): with n replicas using one API key, ShareLimits(n) makes each
// allow 1/n of every limit. Venues whose model reads the exchange's usage
// headers (Binance, Bybit) do not implement it: those headers already
// count every replica's use of the key. Call it before serving.
type LimitSharer interface {
	ShareLimits(n int)
}

// SharedOptions configure Share. Zero values of optional fields are safe.
type SharedOptions struct {
	// Store holds the shared deadlines (required).
	Store BackoffStore
	// Key names the API key the deadline is for: the venue id and the
	// account (credential name), the same on every replica.
	Key string
	// Refresh is how old the last known shared deadline may be before
	// Allow asks Store again. If 0, 150 ms.
	Refresh time.Duration
	// Wait bounds how long Allow waits for that answer; past it, Allow
	// decides with what it knows and the answer is kept when it comes.
	// If 0, 50 ms.
	Wait time.Duration
	// Backoff is the back-off of an HTTP 429 without Retry-After (if 0,
	// 1 s); Ban that of an HTTP 418 (an IP ban) without Retry-After (if
	// 0, 2 min). MaxBackoff caps a Retry-After (if 0, 10 min).
	Backoff, Ban, MaxBackoff time.Duration
	// Logger reports the store failing (once per outage) and recovering.
	// If nil, nothing is logged.
	Logger *slog.Logger
}

// storeTimeout bounds one call to the store, in the background.
const storeTimeout = time.Second

// SharedLimiter is a RateLimiter that adds a back-off shared by every
// replica to a venue's own model: when one replica sees the venue answer
// HTTP 429 or 418, it publishes the deadline (Retry-After, or the
// defaults) to the store, and every replica's Allow refuses until then.
// The shared deadline is cached: the store is asked at most once per
// Refresh, and Allow waits at most Wait for it. When the store fails the
// venue's own model decides alone (it still sees this replica's 429s). It
// is safe for concurrent use.
type SharedLimiter struct {
	inner RateLimiter
	ao    AnswerObserver // inner, if it reads answers' bodies
	o     SharedOptions

	mu       sync.Mutex
	until    time.Time     // latest shared deadline known
	checked  time.Time     // when the store was last asked
	inflight chan struct{} // closed when the running refresh ends
	pending  time.Time     // deadline to publish
	pubbing  bool          // a publisher goroutine runs
	failing  bool          // the store's last call failed (logged)
}

// Share wraps a venue's RateLimiter with the shared back-off of o.
func Share(inner RateLimiter, o SharedOptions) *SharedLimiter {
	if o.Refresh <= 0 {
		o.Refresh = 150 * time.Millisecond
	}
	if o.Wait <= 0 {
		o.Wait = 50 * time.Millisecond
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Ban <= 0 {
		o.Ban = 2 * time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ao, _ := inner.(AnswerObserver)
	return &SharedLimiter{inner: inner, ao: ao, o: o}
}

// Allow refuses while the shared back-off lasts, and otherwise asks the
// venue's own model (which then counts the request).
func (s *SharedLimiter) Allow(op string, now time.Time) (time.Duration, bool) {
	s.refresh(now)
	s.mu.Lock()
	until := s.until
	s.mu.Unlock()
	if now.Before(until) {
		return until.Sub(now), false
	}
	return s.inner.Allow(op, now)
}

// Observe passes resp to the venue's own model and, on HTTP 429 or 418,
// publishes the back-off to the other replicas (in the background).
func (s *SharedLimiter) Observe(resp *http.Response, now time.Time) {
	s.inner.Observe(resp, now)
	if resp == nil {
		return
	}
	var d time.Duration
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		d = RetryAfter(resp, s.o.Backoff, s.o.MaxBackoff)
	case http.StatusTeapot:
		d = RetryAfter(resp, s.o.Ban, s.o.MaxBackoff)
	default:
		return
	}
	s.share(now.Add(d))
}

// ObserveAnswer implements AnswerObserver: it passes the answer to the
// venue's own model when that reads bodies, and publishes the back-off
// that model took (capped at MaxBackoff) to the other replicas.
func (s *SharedLimiter) ObserveAnswer(resp *http.Response, body []byte, now time.Time) time.Duration {
	if s.ao == nil {
		return 0
	}
	d := min(s.ao.ObserveAnswer(resp, body, now), s.o.MaxBackoff)
	if d > 0 {
		s.share(now.Add(d))
	}
	return d
}

// share makes u the shared deadline if it is later than the one known,
// and publishes it in the background.
func (s *SharedLimiter) share(u time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.After(s.until) {
		s.until = u
	}
	if u.After(s.pending) {
		s.pending = u
	}
	if !s.pubbing {
		s.pubbing = true
		go s.publish()
	}
}

// publish publishes pending deadlines until none is left.
func (s *SharedLimiter) publish() {
	for {
		s.mu.Lock()
		u := s.pending
		if u.IsZero() {
			s.pubbing = false
			s.mu.Unlock()
			return
		}
		s.pending = time.Time{}
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		err := s.o.Store.Publish(ctx, s.o.Key, u)
		cancel()
		s.outcome("publish", err)
	}
}

// refresh asks the store for the shared deadline when the one known is
// older than Refresh, waiting at most Wait for the answer.
func (s *SharedLimiter) refresh(now time.Time) {
	s.mu.Lock()
	ch := s.inflight
	if ch == nil {
		if d := now.Sub(s.checked); d >= 0 && d < s.o.Refresh {
			s.mu.Unlock()
			return
		}
		s.checked = now
		ch = make(chan struct{})
		s.inflight = ch
		go s.fetch(ch)
	}
	s.mu.Unlock()
	t := time.NewTimer(s.o.Wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// fetch reads the shared deadline and closes ch.
func (s *SharedLimiter) fetch(ch chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	u, err := s.o.Store.Until(ctx, s.o.Key)
	cancel()
	s.mu.Lock()
	if err == nil && u.After(s.until) {
		s.until = u
	}
	s.inflight = nil
	s.mu.Unlock()
	close(ch)
	s.outcome("read", err)
}

// outcome logs the store's first failure of an outage and its recovery.
func (s *SharedLimiter) outcome(step string, err error) {
	s.mu.Lock()
	was := s.failing
	s.failing = err != nil
	s.mu.Unlock()
	switch {
	case err != nil && !was:
		s.o.Logger.Warn("keystile: shared venue back-off unavailable: this replica's own rate-limit model decides alone", "step", step, "err", err)
	case err == nil && was:
		s.o.Logger.Info("keystile: shared venue back-off available again")
	}
}

var (
	_ RateLimiter    = (*SharedLimiter)(nil)
	_ AnswerObserver = (*SharedLimiter)(nil)
)
