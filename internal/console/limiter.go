package console

import (
	"net/netip"
	"sync"
	"time"
)

// Failed log-ins are limited per source address (an IPv6 client by its
// /64): after loginFreeFailures wrong attempts, each further attempt waits
// for a lockout that starts at loginLockout and doubles up to
// loginMaxLockout; a good log-in clears the count. The table is bounded:
// beyond maxLoginSources the entry idle longest is dropped.
const (
	loginFreeFailures = 5
	loginLockout      = 30 * time.Second
	loginMaxLockout   = 15 * time.Minute
	maxLoginSources   = 4096
	loginForget       = time.Hour
)

type loginEntry struct {
	failures int
	until    time.Time
	last     time.Time
}

type loginLimiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[netip.Prefix]*loginEntry
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, m: map[netip.Prefix]*loginEntry{}}
}

// sourceKey is the address a limit applies to: the address itself, or
// its /64 for IPv6.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// wait returns how long the source must wait before its next attempt
// (0: it may try now).
func (l *loginLimiter) wait(a netip.Addr) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[sourceKey(a)]
	if !ok {
		return 0
	}
	if d := e.until.Sub(l.now()); d > 0 {
		return d
	}
	return 0
}

// fail counts a wrong attempt and returns the lockout it starts (0 if
// none).
func (l *loginLimiter) fail(a netip.Addr) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sourceKey(a)
	e, ok := l.m[k]
	if !ok {
		if len(l.m) >= maxLoginSources {
			l.evictLocked(now)
		}
		e = &loginEntry{}
		l.m[k] = e
	}
	if now.Sub(e.last) > loginForget {
		e.failures = 0
	}
	e.failures++
	e.last = now
	over := e.failures - loginFreeFailures
	if over < 0 {
		return 0
	}
	d := loginLockout
	for i := 0; i < over && d < loginMaxLockout; i++ {
		d *= 2
	}
	d = min(d, loginMaxLockout)
	e.until = now.Add(d)
	return d
}

// ok clears the source's count after a good log-in.
func (l *loginLimiter) ok(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, sourceKey(a))
}

func (l *loginLimiter) evictLocked(now time.Time) {
	var oldest netip.Prefix
	var at time.Time
	for k, e := range l.m {
		if now.Sub(e.last) > loginForget && now.After(e.until) {
			delete(l.m, k)
			continue
		}
		if !oldest.IsValid() || e.last.Before(at) {
			oldest, at = k, e.last
		}
	}
	if len(l.m) >= maxLoginSources && oldest.IsValid() {
		delete(l.m, oldest)
	}
}
