package alert

import (
	"sync"
	"time"
)

// RecentCapacity bounds the alerts a Dispatcher remembers for Recent.
const RecentCapacity = 200

// recent is a bounded ring of the last alerts sent (already scrubbed).
type recent struct {
	mu   sync.Mutex
	buf  []Alert
	next int
	full bool
}

func (r *recent) add(a Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		r.buf = make([]Alert, RecentCapacity)
	}
	r.buf[r.next] = a
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// list returns the alerts at or after since, newest first.
func (r *recent) list(since time.Time) []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Alert, 0, n)
	for i := 1; i <= n; i++ {
		a := r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		if a.Time.Before(since) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Recent returns the alerts given to Send at or after since (at most the
// last RecentCapacity, newest first), as scrubbed and bounded by Send,
// whether or not a sink has delivered them yet; those Send dropped are
// included. It is what the web console shows; it lives in memory only.
func (d *Dispatcher) Recent(since time.Time) []Alert {
	return d.recent.list(since)
}
