package audit

import "time"

// Batcher is an audit writer's loop over its queue (Log here, the
// PostgreSQL log in store/postgres): it takes what is queued in batches of
// at most Max, lets a batch nobody waits for linger for more, and puts the
// records its commit could not write (Kept) first into a later batch, after
// a pause or with the next record queued. It is used by one goroutine.
type Batcher[T any] struct {
	Queue  <-chan T
	Max    int           // records per batch
	Linger time.Duration // how long a batch nobody waits for may wait for more; <= 0: not at all
	Waited func(T) bool  // whether someone waits for a record to be durable (ends a linger)
	Kept   *Retained[T]  // records of failed batches, which commit Keeps
}

// Run hands each batch to commit until the queue is closed. commit may
// add to the batch (Drain) and reports whether the queue is still open;
// it must not keep the batch, which Run reuses. If the queue closes
// while Run waits to retry kept records, they get one last batch; what
// is still kept when Run returns is the caller's to drop.
func (b *Batcher[T]) Run(commit func(batch *[]T, open bool) bool) {
	batch := make([]T, 0, b.Max)
	for {
		batch = batch[:0]
		open, retrying := true, b.Kept.Len() > 0
		if !retrying {
			p, ok := <-b.Queue
			if !ok {
				return
			}
			batch = append(batch, p)
		} else {
			var fresh []T
			t := time.NewTimer(b.Kept.Pause())
			select {
			case p, ok := <-b.Queue:
				if ok {
					fresh = append(fresh, p)
				} else {
					open = false // one last try
				}
			case <-t.C:
			}
			t.Stop()
			// Room for the fresh record (a batch of Max 1 holds both).
			batch = append(b.Kept.Take(batch, max(b.Max-1, 1)), fresh...)
		}
		if open {
			open = b.Drain(&batch)
		}
		if open && !retrying && b.Linger > 0 && len(batch) < b.Max && !b.anyWaited(batch) {
			open = b.linger(&batch)
		}
		open = commit(&batch, open)
		clear(batch)
		if !open {
			return
		}
	}
}

// Drain adds what is queued to batch, up to Max, without waiting. It
// reports whether the queue is still open.
func (b *Batcher[T]) Drain(batch *[]T) bool {
	for len(*batch) < b.Max {
		select {
		case p, ok := <-b.Queue:
			if !ok {
				return false
			}
			*batch = append(*batch, p)
		default:
			return true
		}
	}
	return true
}

func (b *Batcher[T]) anyWaited(batch []T) bool {
	for _, p := range batch {
		if b.Waited(p) {
			return true
		}
	}
	return false
}

// linger adds records to a batch nobody waits for, for up to Linger,
// until the batch is full or a waited record arrives. It reports whether
// the queue is still open.
func (b *Batcher[T]) linger(batch *[]T) bool {
	t := time.NewTimer(b.Linger)
	defer t.Stop()
	for len(*batch) < b.Max {
		select {
		case p, ok := <-b.Queue:
			if !ok {
				return false
			}
			*batch = append(*batch, p)
			if b.Waited(p) {
				return true
			}
		case <-t.C:
			return true
		}
	}
	return true
}
