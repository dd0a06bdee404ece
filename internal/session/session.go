package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// CredentialFunc gives fn access to the fields of a stored credential for
// the duration of the call. The fields must not be retained after fn
// returns. It is the shape of the vault's WithCredential, bound to one
// credential reference.
type CredentialFunc func(ctx context.Context, fn func(fields map[string]secret.Value) error) error

// Source hands out session or access tokens for one venue account.
//
// Implementations are safe for concurrent use. Token returns a token that
// was valid when it was obtained, logging in or refreshing first when none
// is (at most one login or refresh runs at a time). Invalidate marks that
// exact token stale, typically after the venue answered with an
// expired-session error; it is a no-op if a newer token is already in place.
type Source interface {
	Token(ctx context.Context) (Token, error)
	Invalidate(t Token)
}

// Token is a session or access token. The zero Token is not valid.
type Token struct {
	// Value is the session token (Betfair) or access token (OAuth).
	Value secret.Value
	// Expiry is when the token is expected to stop working; zero means
	// unknown (valid until invalidated).
	Expiry time.Time

	appKey   secret.Value  // Betfair application key, for Apply
	lifetime time.Duration // OAuth expires_in, for early refresh
	gen      uint64        // generation within owner
	owner    *flight
}

// Expired reports whether the token has a known expiry at or before now.
func (t Token) Expired(now time.Time) bool {
	return !t.Expiry.IsZero() && !now.Before(t.Expiry)
}

// Sentinel errors.
var (
	// ErrClosed is returned by a source after Close.
	ErrClosed = errors.New("session: source closed")
	// ErrRateLimited matches every *RateLimitedError.
	ErrRateLimited = errors.New("session: login rate limit reached")
	// ErrStateMismatch is returned by AuthorizationCodeFlow when the
	// callback's state parameter is not the one sent.
	ErrStateMismatch = errors.New("session: oauth callback state mismatch")
)

// RateLimitedError is returned instead of logging in when the login rate
// bound is reached.
type RateLimitedError struct {
	// RetryAfter is how long until a login would be allowed.
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("session: login rate limit reached, retry after %s", e.RetryAfter.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// MissingFieldError reports a credential field that a login needs but the
// credential lacks.
type MissingFieldError struct{ Field string }

func (e *MissingFieldError) Error() string {
	return "session: credential field " + e.Field + " missing"
}

// HTTPStatusError reports an identity or token endpoint answering with an
// unexpected HTTP status and no recognisable error body.
type HTTPStatusError struct {
	Op     string
	Status int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("session: %s: unexpected http status %d", e.Op, e.Status)
}

// maxBody bounds every identity/token endpoint response read.
const maxBody = 1 << 20

func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, errors.New("response body too large")
	}
	return b, nil
}

func discardLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func clockOrNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// defaultClient is used when no client is passed in: bounded time, and no
// redirects, so credentials in a request body are never re-sent elsewhere.
func defaultClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// flight is the single-flight token cache shared by every source.
type flight struct {
	now     func() time.Time
	timeout time.Duration
	// fetch obtains a new token. It runs detached from any one caller's
	// cancellation, bounded by timeout.
	fetch func(ctx context.Context) (Token, error)
	// refreshAt returns when t should be replaced early; zero = never.
	refreshAt func(t Token) time.Time
	log       *slog.Logger

	mu     sync.Mutex
	cur    Token
	have   bool
	gen    uint64
	call   *flightCall
	closed bool
}

type flightCall struct {
	done chan struct{}
	tok  Token
	err  error
}

func (f *flight) fresh(now time.Time) bool {
	if !f.have || f.cur.Expired(now) {
		return false
	}
	if f.refreshAt != nil {
		if at := f.refreshAt(f.cur); !at.IsZero() && !now.Before(at) {
			return false
		}
	}
	return true
}

func (f *flight) token(ctx context.Context) (Token, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return Token{}, ErrClosed
	}
	if f.fresh(f.now()) {
		t := f.cur
		f.mu.Unlock()
		return t, nil
	}
	c := f.call
	if c == nil {
		c = &flightCall{done: make(chan struct{})}
		f.call = c
		go f.run(context.WithoutCancel(ctx), c)
	}
	f.mu.Unlock()

	select {
	case <-c.done:
	case <-ctx.Done():
		return Token{}, fmt.Errorf("session: waiting for token: %w", ctx.Err())
	}
	if c.err != nil {
		// An early refresh that failed leaves a still-valid token usable.
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.have && !f.cur.Expired(f.now()) && !f.closed {
			f.log.Warn("session: early refresh failed, using current token", "err", c.err)
			return f.cur, nil
		}
		return Token{}, c.err
	}
	return c.tok, nil
}

func (f *flight) run(ctx context.Context, c *flightCall) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	tok, err := f.fetch(ctx)
	f.mu.Lock()
	if err == nil {
		f.gen++
		tok.gen = f.gen
		tok.owner = f
		f.cur, f.have = tok, true
	}
	c.tok, c.err = tok, err
	f.call = nil
	f.mu.Unlock()
	close(c.done)
}

func (f *flight) invalidate(t Token) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.owner == f && f.have && f.cur.gen == t.gen {
		f.have = false
	}
}

// current returns the cached token, if any, regardless of freshness.
func (f *flight) current() (Token, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.have
}

// update changes the expiry of the cached token if it is still generation gen.
func (f *flight) update(gen uint64, expiry time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.have && f.cur.gen == gen {
		f.cur.Expiry = expiry
	}
}

// close marks the flight closed and returns the token in place, if any.
func (f *flight) close() (Token, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	t, ok := f.cur, f.have
	f.have = false
	return t, ok
}

// formField is one application/x-www-form-urlencoded pair whose value may be
// secret.
type formField struct {
	name  string
	value []byte
}

// encodeForm builds a form body in a fresh byte slice that the caller can
// wipe once the request is sent.
func encodeForm(fields ...formField) []byte {
	var b []byte
	for i, f := range fields {
		if i > 0 {
			b = append(b, '&')
		}
		b = appendFormEscape(b, []byte(f.name))
		b = append(b, '=')
		b = appendFormEscape(b, f.value)
	}
	return b
}

// appendFormEscape appends src form-urlencoded (as url.QueryEscape does)
// without going through a string.
func appendFormEscape(dst, src []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range src {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~':
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}
