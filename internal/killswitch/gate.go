package killswitch

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/upstream"
)

// gate tracks the requests on their way to a venue, so that engaging the
// switch can wait for the ones that passed the token check before it and
// refuse every later one right before it leaves.
type gate struct {
	mu      sync.Mutex
	flights map[*flight]struct{}
}

type flight struct {
	venue string
	done  chan struct{}
}

// enter registers a request to venue, or refuses it if st covers venue.
// The check and the registration are one step under mu, which publish
// also takes: a request either registered before a state was published
// (and is waited for) or sees it (and is refused).
func (g *gate) enter(st *atomic.Pointer[state], venue string) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st.Load().coversVenue(venue) {
		return nil, false
	}
	f := &flight{venue: venue, done: make(chan struct{})}
	g.flights[f] = struct{}{}
	return f, true
}

func (g *gate) exit(f *flight) {
	g.mu.Lock()
	delete(g.flights, f)
	g.mu.Unlock()
	close(f.done)
}

// publish makes next the state in force and returns the done channels of
// the requests in flight to the venues cover selects (nil cover: none).
func (g *gate) publish(next *state, st *atomic.Pointer[state], cover func(venue string) bool) []chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	st.Store(next)
	if cover == nil {
		return nil
	}
	var waits []chan struct{}
	for f := range g.flights {
		if cover(f.venue) {
			waits = append(waits, f.done)
		}
	}
	return waits
}

// wait waits for every channel, at most timeout in all, and returns how
// many were still open then.
func (g *gate) wait(ctx context.Context, waits []chan struct{}, timeout time.Duration) int {
	if len(waits) == 0 {
		return 0
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for i, c := range waits {
		select {
		case <-c:
		case <-t.C:
			return len(waits) - i
		case <-ctx.Done():
			return len(waits) - i
		}
	}
	return 0
}

// internalKey marks the context of a request keystile makes itself
// (cancelling orders), which the gate lets through.
type internalKey struct{}

func internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

func isInternal(ctx context.Context) bool {
	v, _ := ctx.Value(internalKey{}).(bool)
	return v
}

// Transport wraps a venue's upstream transport (after the signer, before
// the network): a request to venueID is refused while a trip covers the
// venue or everything, and is tracked while in flight so that Engage can
// wait for it. keystile's own cancel-all requests pass. The refusal wraps
// ErrEngaged and upstream.ErrRefused (final: never retried).
func (s *Switch) Transport(venueID string, next http.RoundTripper) http.RoundTripper {
	return &gatedTransport{s: s, venue: venueID, next: next}
}

type gatedTransport struct {
	s     *Switch
	venue string
	next  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if isInternal(req.Context()) {
		return t.next.RoundTrip(req)
	}
	f, ok := t.s.gate.enter(&t.s.state, t.venue)
	if !ok {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%w: venue %s: %w", ErrEngaged, t.venue, upstream.ErrRefused)
	}
	defer t.s.gate.exit(f)
	return t.next.RoundTrip(req)
}

var _ http.RoundTripper = (*gatedTransport)(nil)
