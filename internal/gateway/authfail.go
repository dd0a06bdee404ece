package gateway

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/token"
)

// Defaults of the authentication failure limits.
const (
	DefaultAuthFailureBurst = 20
	DefaultAuthFailureEvery = 3 * time.Second
	// DefaultAuthFailureEntries bounds each table of failure buckets.
	DefaultAuthFailureEntries = 1 << 16
)

// Refusals of the failure limits.
var (
	errAuthBlocked = publicError{http.StatusTooManyRequests, "too_many_failures", "too many failed authentications from this address; retry later"}
	errTokenRetry  = publicError{http.StatusTooManyRequests, "too_many_failures", "this token was refused too often; retry later"}
)

// authFailures limits failed authentications without letting one client
// lock others out. Every bot on a host shares its address (127.0.0.1 by
// default), so the limits are keyed by what was presented, and a token
// that verifies is never refused by them — they are consulted only once
// verification has failed:
//
//   - a token keystile never issued (malformed, or well-formed but
//     unknown) is a guess: guesses count per source address (IPv6 sources
//     by /64, since one host usually owns a whole /64). After burst of them
//     the source's further unknown tokens get 429 token.brute_force until
//     its bucket refills at one per interval;
//   - a token keystile issued that is revoked or has expired is no guess
//     at another token: its refusals count per (source, token id), so a
//     revoked bot that keeps retrying slows down itself (429
//     token.retry_limit), not the valid tokens next to it;
//   - a valid token used where it may not be (venue, source CIDR, frozen,
//     environment) is not counted at all.
//
// Tokens carry 256 random bits, so guessing one is hopeless with or
// without the limit; what it bounds is the work and the log noise a
// client spraying tokens causes. Memory is bounded: each table keeps at
// most entries buckets, dropping refilled ones first and, if none has
// refilled, half the table — so a client spraying random tokens from one
// address costs one entry, and one spraying from many addresses cannot
// grow it past the bound either.
type authFailures struct {
	burst   int
	every   time.Duration
	entries int

	mu      sync.Mutex
	guesses map[netip.Addr]*failBucket
	retries map[retryKey]*failBucket
}

// retryKey is a known token presented from a source.
type retryKey struct {
	src netip.Addr
	id  token.ID
}

type failBucket struct {
	level float64 // failures "in" the bucket
	at    time.Time
}

func newAuthFailures(burst int, every time.Duration, entries int) *authFailures {
	if burst <= 0 {
		burst = DefaultAuthFailureBurst
	}
	if every <= 0 {
		every = DefaultAuthFailureEvery
	}
	if entries <= 0 {
		entries = DefaultAuthFailureEntries
	}
	return &authFailures{burst: burst, every: every, entries: entries,
		guesses: map[netip.Addr]*failBucket{}, retries: map[retryKey]*failBucket{}}
}

func sourceKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// refusal answers a failed verification of a token presented from src:
// the token error itself, or 429 with a Retry-After when the failure's
// bucket is full. Failures that count are recorded.
func (f *authFailures) refusal(h http.Header, src netip.Addr, err error, now time.Time) (publicError, string) {
	wait, rule, limited := f.limit(src, err, now)
	if !limited {
		return tokenError(err), "token." + tokenRule(err)
	}
	h.Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
	if rule == "token.retry_limit" {
		return errTokenRetry, rule
	}
	return errAuthBlocked, rule
}

// limit records a failed verification of a token presented from src and
// reports whether it is over its limit: then how long to wait and the
// rule (token.brute_force for guesses, token.retry_limit for a revoked or
// expired token). Failures that are no guess are not counted.
func (f *authFailures) limit(src netip.Addr, err error, now time.Time) (time.Duration, string, bool) {
	var re *token.RefusedError
	switch {
	case errors.Is(err, token.ErrMalformed), errors.Is(err, token.ErrUnknown):
		if wait, full := check(f, f.guesses, sourceKey(src), now); full {
			return wait, "token.brute_force", true
		}
	case errors.As(err, &re) && (errors.Is(err, token.ErrRevoked) || errors.Is(err, token.ErrExpired)):
		if wait, full := check(f, f.retries, retryKey{sourceKey(src), re.ID}, now); full {
			return wait, "token.retry_limit", true
		}
	}
	return 0, "", false
}

// check reports whether the bucket of k in m is full (and how long until
// one more failure fits); if it is not, it records one failure.
func check[K comparable](f *authFailures, m map[K]*failBucket, k K, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := m[k]
	if b == nil {
		if len(m) >= f.entries {
			evict(f, m, now)
		}
		b = &failBucket{at: now}
		m[k] = b
	}
	lvl := f.drain(b, now)
	if lvl > float64(f.burst)-1 {
		wait := time.Duration((lvl - float64(f.burst) + 1) * float64(f.every))
		return max(wait, time.Second), true
	}
	b.level++
	return 0, false
}

// drain returns the bucket's level at now.
func (f *authFailures) drain(b *failBucket, now time.Time) float64 {
	el := now.Sub(b.at)
	if el > 0 {
		b.level -= float64(el) / float64(f.every)
		if b.level < 0 {
			b.level = 0
		}
		b.at = now
	}
	return b.level
}

// evict drops m's empty buckets, or half of m if none is empty. Called
// with f.mu held.
func evict[K comparable](f *authFailures, m map[K]*failBucket, now time.Time) {
	for k, b := range m {
		if f.drain(b, now) == 0 {
			delete(m, k)
		}
	}
	if len(m) < f.entries {
		return
	}
	n := 0
	for k := range m {
		delete(m, k)
		if n++; n >= f.entries/2 {
			break
		}
	}
}

// sizes reports the number of buckets in each table (tests).
func (f *authFailures) sizes() (guesses, retries int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.guesses), len(f.retries)
}
