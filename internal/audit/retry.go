package audit

import "time"

// Retry parameters of the writers (Log here, the PostgreSQL log in
// store/postgres): a batch's outcome and detect records that could not
// be written are kept, oldest first, and tried again first, after
// RetryFirst doubling up to RetryMax (or with the next record queued);
// at most MaxRetained are kept, the newest beyond that are dropped, and
// those still kept when the log closes are dropped (counted and logged).
const (
	RetryFirst  = 200 * time.Millisecond
	RetryMax    = 2 * time.Second
	MaxRetained = 8192
)

// Retained holds a writer's records of failed batches. It is owned by
// one goroutine (the writer) and not safe for concurrent use.
type Retained[T any] struct {
	items []T
	wait  time.Duration
}

// Len is the number of records kept.
func (r *Retained[T]) Len() int { return len(r.items) }

// Keep puts failed, older than anything kept, first; it returns how many
// of the newest it dropped to stay within MaxRetained.
func (r *Retained[T]) Keep(failed []T) int {
	r.items = append(append(make([]T, 0, len(failed)+len(r.items)), failed...), r.items...)
	over := len(r.items) - MaxRetained
	if over <= 0 {
		return 0
	}
	clear(r.items[MaxRetained:])
	r.items = r.items[:MaxRetained]
	return over
}

// Take appends up to n of the oldest records to dst and forgets them.
func (r *Retained[T]) Take(dst []T, n int) []T {
	n = min(n, len(r.items))
	dst = append(dst, r.items[:n]...)
	clear(r.items[:n])
	r.items = r.items[n:]
	return dst
}

// Pause returns how long to wait before the next try (RetryFirst, then
// doubling up to RetryMax until Reset).
func (r *Retained[T]) Pause() time.Duration {
	if r.wait == 0 {
		r.wait = RetryFirst
	}
	d := r.wait
	r.wait = min(2*r.wait, RetryMax)
	return d
}

// Reset starts the pauses over (a batch was written).
func (r *Retained[T]) Reset() { r.wait = 0 }

// Drain forgets every record kept and returns how many there were.
func (r *Retained[T]) Drain() int {
	n := len(r.items)
	clear(r.items)
	r.items = nil
	return n
}
