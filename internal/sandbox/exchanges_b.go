package sandbox

import (
	"sync"
	"time"
)

// Exchange emulators defined in this file's group (okx.go, bybit.go,
// coinbase.go).
const (
	VenueOKX      = "okx"
	VenueBybit    = "bybit"
	VenueCoinbase = "coinbase"
)

// exchangesB lists the exchange emulators defined in this file (in start
// order). Owned by one engineer: see exchanges_a.go / exchanges_b.go.
func exchangesB() []string { return []string{VenueOKX, VenueBybit, VenueCoinbase} }

// newExchangeB builds the emulator named name, reporting ok=false if this
// file does not define it.
func newExchangeB(name string, vs *venueServer, creds map[string]string) (emu emulator, ok bool, err error) {
	switch name {
	case VenueOKX:
		emu, err = newOKX(vs, creds)
	case VenueBybit:
		emu, err = newBybit(vs, creds)
	case VenueCoinbase:
		emu, err = newCoinbase(vs, creds)
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return emu, true, nil
}

// windowCounter is a fixed-window request counter (an exchange's rate limit).
type windowCounter struct {
	window time.Duration
	limit  int

	mu    sync.Mutex
	start time.Time
	n     int
}

// take counts one request at now and reports whether it is within the limit.
func (c *windowCounter) take(now time.Time) bool {
	_, ok := c.status(now, true)
	return ok
}

// status resets an elapsed window, optionally counts one request and returns
// the requests left in the window and whether the request is allowed.
func (c *windowCounter) status(now time.Time, take bool) (left int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.start.IsZero() || now.Sub(c.start) >= c.window || now.Before(c.start) {
		c.start, c.n = now, 0
	}
	if take {
		if c.n >= c.limit {
			return 0, false
		}
		c.n++
	}
	return c.limit - c.n, true
}

// reset returns when the current window ends.
func (c *windowCounter) reset() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start.Add(c.window)
}
