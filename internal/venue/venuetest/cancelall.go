package venuetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
)

// MapCredentials serves credential fields from a map (the sandbox's).
func MapCredentials(fields map[string]string) venue.Credentials {
	return func(_ context.Context, fn func(venue.Credential) error) error { return fn(mapCredential(fields)) }
}

type mapCredential map[string]string

func (m mapCredential) Field(name string) (secret.Value, error) {
	v, ok := m[name]
	if !ok {
		return secret.Value{}, fmt.Errorf("venuetest: no credential field %q", name)
	}
	return secret.FromString(v), nil
}

// Canceller is a venue that cancels every open order.
type Canceller interface {
	venue.Venue
	venue.CancelAller
}

// Signer returns a venue.Sender that signs each request with v (as the
// gateway's signer does: a fresh Authenticate per request) and sends it
// below base, counting the requests in sent.
func Signer(v venue.Venue, base string, sent *atomic.Int64) venue.Sender {
	return func(ctx context.Context, r *venue.Request) (int, []byte, error) {
		if sent != nil {
			sent.Add(1)
		}
		req, err := venue.NewHTTPRequest(ctx, base, r)
		if err != nil {
			return 0, nil, err
		}
		if err := v.Authenticate(ctx, req, r.Body); err != nil {
			return 0, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		return resp.StatusCode, b, err
	}
}

// CancelAllSetup is a running emulator and a venue built on its
// credentials.
type CancelAllSetup struct {
	Sandbox *sandbox.Server
	Venue   Canceller
	Base    string
	Name    string
}

// StartCancelAll starts the emulator of sandboxVenue and builds the venue
// with newVenue from its credentials and base URL.
func StartCancelAll(t *testing.T, sandboxVenue string, newVenue func(info sandbox.VenueInfo) (Canceller, error)) *CancelAllSetup {
	t.Helper()
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandboxVenue}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	info := s.Info().Venues[sandboxVenue]
	v, err := newVenue(info)
	if err != nil {
		t.Fatal(err)
	}
	return &CancelAllSetup{Sandbox: s, Venue: v, Base: info.BaseURL, Name: sandboxVenue}
}

// Place sends each order placement (signed) and fails unless the venue
// accepted it; accepted reports whether an answer body means success.
func (c *CancelAllSetup) Place(t *testing.T, orders []*venue.Request, accepted func(status int, body []byte) bool) {
	t.Helper()
	for _, o := range orders {
		status, body := Send(t, c.Venue, c.Base, o)
		if !accepted(status, body) {
			t.Fatalf("place %s %s?%s: %d %s", o.Method, o.Path, o.RawQuery, status, body)
		}
	}
}

// Seed puts n open orders in the emulator's book directly (as the venue's
// own ids look: idPrefix and a number), built by order(i), for paging
// tests beyond the venue's rate limits.
func (c *CancelAllSetup) Seed(t *testing.T, idPrefix string, n int, order func(i int) sandbox.Order) {
	t.Helper()
	orders := make([]sandbox.Order, n)
	for i := range orders {
		orders[i] = order(i)
	}
	if _, err := c.Sandbox.AddOrders(c.Name, idPrefix, orders); err != nil {
		t.Fatal(err)
	}
}

// Open returns the ids of the emulator's open orders.
func (c *CancelAllSetup) Open() []string {
	var ids []string
	for _, o := range c.Sandbox.Orders(c.Name) {
		if o.Status == sandbox.OrderOpen {
			ids = append(ids, o.ID)
		}
	}
	return ids
}

// CheckCancelAll runs CancelAll and checks the result against the
// emulator: every order open before is reported cancelled, nothing
// failed, nothing is open at the emulator afterwards, no request was
// refused for authentication. It returns the result.
func (c *CancelAllSetup) CheckCancelAll(t *testing.T) venue.CancelResult {
	t.Helper()
	before := c.Open()
	var sent atomic.Int64
	res, err := c.Venue.CancelAll(t.Context(), Signer(c.Venue, c.Base, &sent))
	if err != nil {
		t.Fatalf("CancelAll: %v", err)
	}
	if len(res.Failed) > 0 {
		t.Fatalf("failures: %+v", res.Failed)
	}
	if left := c.Open(); len(left) > 0 {
		t.Fatalf("%d orders still open at the emulator: %v", len(left), left)
	}
	got := slices.Clone(res.Cancelled)
	slices.Sort(got)
	want := slices.Clone(before)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("reported cancelled %v, want %v", got, want)
	}
	if int64(res.Requests) != sent.Load() {
		t.Errorf("Requests = %d, but %d were sent", res.Requests, sent.Load())
	}
	if st := c.Sandbox.Stats(c.Name); st.AuthFailures != 0 {
		t.Errorf("authentication failures at the emulator: %d", st.AuthFailures)
	}
	return res
}

// CheckVenueDown: with every request failing, CancelAll returns an error
// (it cannot even list) and cancels nothing.
func (c *CancelAllSetup) CheckVenueDown(t *testing.T) {
	t.Helper()
	down := func(context.Context, *venue.Request) (int, []byte, error) {
		return 0, nil, errors.New("connection refused")
	}
	res, err := c.Venue.CancelAll(t.Context(), down)
	if err == nil && len(res.Failed) == 0 {
		t.Fatalf("CancelAll with the venue down: no error and no failure: %+v", res)
	}
	if len(res.Cancelled) != 0 {
		t.Fatalf("cancelled %v with the venue down", res.Cancelled)
	}
}

// CheckFault injects f on the venue's cancel path and checks CancelAll
// reports the orders it could not cancel (as failures or an error), then
// that a second pass, with the fault gone, cancels them all.
func (c *CancelAllSetup) CheckFault(t *testing.T, f sandbox.Fault) {
	t.Helper()
	if len(c.Open()) == 0 {
		t.Fatal("CheckFault needs open orders")
	}
	if err := c.Sandbox.InjectFault(c.Name, f); err != nil {
		t.Fatal(err)
	}
	res, err := c.Venue.CancelAll(t.Context(), Signer(c.Venue, c.Base, nil))
	if err == nil && len(res.Failed) == 0 && len(c.Open()) > 0 {
		t.Fatalf("orders left open but nothing reported: %+v", res)
	}
	_ = c.Sandbox.ClearFaults(c.Name)
	c.CheckCancelAll(t)
}

// FuzzCancelAll is the body of a FuzzCancelAllAnswer target: whatever the
// venue answers (every request gets status and body), CancelAll neither
// panics nor loops, and reports only non-empty order ids as cancelled.
func FuzzCancelAll(t *testing.T, v venue.CancelAller, status int, body []byte) {
	var sent int
	send := func(context.Context, *venue.Request) (int, []byte, error) {
		sent++
		if sent > 10000 {
			t.Fatal("CancelAll does not stop")
		}
		return status, body, nil
	}
	res, _ := v.CancelAll(t.Context(), send)
	for _, id := range res.Cancelled {
		if id == "" {
			t.Fatalf("an empty order id reported cancelled: %+v", res)
		}
	}
	if res.Requests != sent {
		t.Fatalf("Requests = %d, sent %d", res.Requests, sent)
	}
}
