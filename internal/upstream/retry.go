package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults applied to zero-valued RetryPolicy fields.
const (
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	DefaultMaxRetryAfter  = 10 * time.Second
)

// RetryPolicy configures a Retrier. The zero value is usable.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, first one included. If
	// zero, DefaultMaxAttempts; 1 disables retries. A session refresh re-run
	// does not count as an attempt.
	MaxAttempts int
	// InitialBackoff is the cap of the first backoff; it doubles on every
	// retry up to MaxBackoff, and the actual wait is uniform in [0, cap]
	// ("full jitter"). If zero, DefaultInitialBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the backoff. If zero, DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the Retrier waits for; a
	// response asking for longer is returned to the caller at once. If zero,
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration

	// SessionExpired, if non-nil, reports whether a response means the
	// venue session expired. It may read the body with PeekBody. When it
	// returns true, the Retrier calls RefreshSession once and re-runs the
	// attempt once through next (so it is signed with the new session).
	// Must be set together with RefreshSession.
	SessionExpired func(*http.Response) bool
	// RefreshSession renews the venue session (single-flighted by the
	// session package). Must be set together with SessionExpired.
	RefreshSession func(ctx context.Context) error

	// Now is the clock used to read Retry-After dates. If nil, time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done (then it returns ctx.Err()). If nil,
	// a timer-based wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives one debug line per retry. If nil, nothing is logged.
	Logger *slog.Logger
	// OnRetry, if set, is called once before each retry (not before the
	// re-run after a session refresh). It must not block.
	OnRetry func()
}

// Validate reports the first problem with p, or nil.
func (p *RetryPolicy) Validate() error {
	if p.MaxAttempts < 0 || p.InitialBackoff < 0 || p.MaxBackoff < 0 || p.MaxRetryAfter < 0 {
		return fmt.Errorf("upstream: %w: negative retry setting", ErrInvalidOptions)
	}
	if (p.SessionExpired == nil) != (p.RefreshSession == nil) {
		return fmt.Errorf("upstream: %w: SessionExpired and RefreshSession go together", ErrInvalidOptions)
	}
	return nil
}

// Retrier is an http.RoundTripper that retries what is safe to retry. It
// wraps the signing RoundTripper, so every attempt goes through next and is
// signed afresh. Rules:
//
//   - GET, HEAD and OPTIONS are retried on transport errors and on 429, 502,
//     503 and 504 answers.
//   - Other methods are retried only on errors that happened before any
//     request byte was written (dial, connection refused, TLS handshake). A
//     failure after the bytes left is returned as *UnknownOutcomeError and
//     never retried. Status answers are never retried for writes.
//   - Errors no retry can fix (ErrHostNotAllowed, ErrPlainHTTP, certificate
//     verification, TLS alerts) are returned at once.
//   - A Retry-After header (seconds or HTTP date) sets the wait if it is at
//     most MaxRetryAfter; a longer one returns the response to the caller.
//   - Bodies are replayed with req.GetBody; without it a needed retry fails
//     with ErrBodyNotReplayable (or the last response is returned).
//   - Bodies of discarded responses are drained (up to 64 KiB) and closed.
//   - Waiting stops as soon as the request context is done.
//
// A Retrier never follows redirects. It is safe for concurrent use.
type Retrier struct {
	next  http.RoundTripper
	p     RetryPolicy
	log   *slog.Logger
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

// NewRetrier validates p and wraps next.
func NewRetrier(next http.RoundTripper, p RetryPolicy) (*Retrier, error) {
	if next == nil {
		return nil, fmt.Errorf("upstream: %w: nil next round tripper", ErrInvalidOptions)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	p.InitialBackoff = orDefault(p.InitialBackoff, DefaultInitialBackoff)
	p.MaxBackoff = orDefault(p.MaxBackoff, DefaultMaxBackoff)
	p.MaxRetryAfter = orDefault(p.MaxRetryAfter, DefaultMaxRetryAfter)
	r := &Retrier{next: next, p: p, log: p.Logger, now: p.Now, sleep: p.Sleep}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.sleep == nil {
		r.sleep = sleepCtx
	}
	return r, nil
}

// RoundTrip implements http.RoundTripper.
func (r *Retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	idempotent := isIdempotent(req.Method)
	refreshed := false
	for attempt, run := 1, 0; ; run++ {
		areq, err := attemptRequest(req, run)
		if err != nil {
			return nil, err
		}
		var wrote atomic.Bool
		if !idempotent {
			// Whether a write's bytes left decides whether it may be
			// retried; a read is retried either way, so it is spared
			// the trace (a context and its hooks per request).
			areq = areq.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
				WroteHeaders: func() { wrote.Store(true) },
				WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
			}))
		}
		resp, err := r.next.RoundTrip(areq)
		if err != nil {
			var uo *UnknownOutcomeError
			sent := wrote.Load() || errors.As(err, &uo)
			if sent && uo == nil {
				err = &UnknownOutcomeError{Method: req.Method, Host: req.URL.Host, Err: err}
			}
			if ctx.Err() != nil || errorsIsFinal(err) || (sent && !idempotent) || attempt >= r.p.MaxAttempts {
				return nil, err
			}
			if !replayable(req) {
				return nil, fmt.Errorf("upstream: %w: %w", ErrBodyNotReplayable, err)
			}
			if err := r.wait(ctx, r.backoff(attempt), attempt, err.Error()); err != nil {
				return nil, err
			}
			attempt++
			continue
		}
		if r.p.SessionExpired != nil && !refreshed && r.p.SessionExpired(resp) {
			if !replayable(req) {
				return resp, nil
			}
			refreshed = true
			discard(resp)
			if err := r.p.RefreshSession(ctx); err != nil {
				return nil, fmt.Errorf("upstream: %w: %w", ErrSessionRefresh, err)
			}
			r.log.Debug("upstream: session refreshed, re-running request", slog.String("method", req.Method), slog.String("host", req.URL.Host))
			continue // same attempt number: the re-run is not a retry
		}
		if !idempotent || !retryableStatus(resp.StatusCode) || attempt >= r.p.MaxAttempts || !replayable(req) {
			return resp, nil
		}
		d := r.backoff(attempt)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if v, ok := ParseRetryAfter(ra, r.now()); ok {
				if v > r.p.MaxRetryAfter {
					return resp, nil
				}
				d = v
			}
		}
		discard(resp)
		if err := r.wait(ctx, d, attempt, resp.Status); err != nil {
			return nil, err
		}
		attempt++
	}
}

func (r *Retrier) wait(ctx context.Context, d time.Duration, attempt int, why string) error {
	if r.p.OnRetry != nil {
		r.p.OnRetry()
	}
	r.log.Debug("upstream: retrying", slog.Int("attempt", attempt), slog.Duration("wait", d), slog.String("after", why))
	if err := r.sleep(ctx, d); err != nil {
		return fmt.Errorf("upstream: waiting to retry: %w", err)
	}
	return nil
}

// backoff is the full-jitter wait before retry number attempt (1-based).
func (r *Retrier) backoff(attempt int) time.Duration {
	c := r.p.InitialBackoff
	for i := 1; i < attempt && c < r.p.MaxBackoff; i++ {
		c *= 2
	}
	c = min(c, r.p.MaxBackoff)
	if c <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(c) + 1)) // #nosec G404 -- jitter needs no unpredictability
}

// attemptRequest returns the request for run n: the caller's request first,
// then clones with a fresh body from GetBody.
func attemptRequest(req *http.Request, n int) (*http.Request, error) {
	if n == 0 {
		return req, nil
	}
	out := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("upstream: %w: %w", ErrBodyNotReplayable, err)
		}
		out.Body = body
	}
	return out, nil
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// discard drains up to 64 KiB of a response body, so the connection can be
// reused, and closes it.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ParseRetryAfter parses a Retry-After header value (RFC 9110 10.2.3):
// either delay-seconds (a non-negative decimal integer) or an HTTP date,
// turned into a duration from now (zero if in the past). ok is false for
// anything else. Very large second counts saturate rather than overflow.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return 0, false
			}
		}
		const maxSec = int64(1<<63-1) / int64(time.Second)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > maxSec {
			return time.Duration(maxSec) * time.Second, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d = t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// PeekBody reads up to n bytes of resp.Body and puts them back, so a
// SessionExpired hook can look at an error document without consuming it.
// The restored body still closes the original one. A read error other
// than io.EOF is returned, with resp.Body still restored.
func PeekBody(resp *http.Response, n int) ([]byte, error) {
	if resp == nil || resp.Body == nil || n <= 0 {
		return nil, nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, int64(n)))
	resp.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(buf), resp.Body), closer: resp.Body}
	if err != nil {
		return buf, fmt.Errorf("upstream: peek response body: %w", err)
	}
	return buf, nil
}

type peekedBody struct {
	io.Reader
	closer io.Closer
}

func (b *peekedBody) Close() error { return b.closer.Close() }

var _ http.RoundTripper = (*Retrier)(nil)
