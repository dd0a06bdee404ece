package gateway

import (
	"net/netip"
	"sync"
	"time"
)

// Defaults of the per-source authentication failure limit.
const (
	DefaultAuthFailureBurst = 20
	DefaultAuthFailureEvery = 3 * time.Second
	maxAuthFailureSources   = 1 << 16
)

// authFailures limits token failures per source address: each source has
// a bucket of burst failures that refills one every interval. While a
// source's bucket is empty every request it sends with a token is refused
// (429) before the token is even looked at, so guessing tokens costs the
// guesser time, not keystile. IPv6 sources are grouped by /64, since one
// host usually owns a whole /64. The table is bounded: when full, sources
// whose buckets have refilled are dropped, and if none has, the oldest
// entries go.
type authFailures struct {
	burst int
	every time.Duration

	mu  sync.Mutex
	src map[netip.Addr]*failBucket
}

type failBucket struct {
	level float64 // failures "in" the bucket
	at    time.Time
}

func newAuthFailures(burst int, every time.Duration) *authFailures {
	if burst <= 0 {
		burst = DefaultAuthFailureBurst
	}
	if every <= 0 {
		every = DefaultAuthFailureEvery
	}
	return &authFailures{burst: burst, every: every, src: map[netip.Addr]*failBucket{}}
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

// blocked reports whether src has used up its failures, and how long
// until it may try again.
func (f *authFailures) blocked(src netip.Addr, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.src[sourceKey(src)]
	if b == nil {
		return 0, false
	}
	lvl := f.drain(b, now)
	if lvl <= float64(f.burst)-1 {
		return 0, false
	}
	wait := time.Duration((lvl - float64(f.burst) + 1) * float64(f.every))
	return max(wait, time.Second), true
}

// fail records one failure of src.
func (f *authFailures) fail(src netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := sourceKey(src)
	b := f.src[k]
	if b == nil {
		if len(f.src) >= maxAuthFailureSources {
			f.evict(now)
		}
		b = &failBucket{at: now}
		f.src[k] = b
	}
	f.drain(b, now)
	if b.level < float64(f.burst) {
		b.level++
	}
}

// evict drops empty buckets, or half the table if none is empty.
func (f *authFailures) evict(now time.Time) {
	for k, b := range f.src {
		if f.drain(b, now) == 0 {
			delete(f.src, k)
		}
	}
	if len(f.src) < maxAuthFailureSources {
		return
	}
	n := 0
	for k := range f.src {
		delete(f.src, k)
		if n++; n >= maxAuthFailureSources/2 {
			break
		}
	}
}
