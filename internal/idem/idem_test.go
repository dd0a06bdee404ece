package idem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func openDB(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newManager opens a real SQLite database in a temp dir and a Manager on it.
func newManager(t testing.TB, o idem.Options) (*idem.Manager, *sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.db")
	db := openDB(t, path)
	t.Cleanup(func() { _ = db.Close() })
	return managerOn(t, db, o), db, path
}

func managerOn(t testing.TB, db *sqlite.DB, o idem.Options) *idem.Manager {
	t.Helper()
	if o.Store == nil {
		o.Store = db.Idempotency()
	}
	if o.Secret == nil {
		o.Secret = secret
	}
	m, err := idem.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

var (
	key = idem.Key{Scope: "tok_1/binance", Value: "order-1"}
	fp  = []byte("fingerprint-A")
	ctx = context.Background()
)

func answer(body string) idem.Replay {
	return idem.Replay{Status: 200, Body: []byte(body), VenueOrderID: "v1", Header: http.Header{
		"Content-Type": {"application/json"}, "Set-Cookie": {"s=1"}, "X-Mbx-Apikey": {"canary-key"},
	}}
}

func TestSameKeyReplays(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	tk, r, err := m.Begin(ctx, key, fp, "cid-1")
	if err != nil || r != nil || tk == nil {
		t.Fatalf("first Begin = %v, %v, %v", tk, r, err)
	}
	if tk.ClientOrderID() != "cid-1" || tk.Key() != key {
		t.Fatalf("ticket %q %v", tk.ClientOrderID(), tk.Key())
	}
	if err := tk.Done(ctx, answer(`{"orderId":7}`)); err != nil {
		t.Fatal(err)
	}
	tk2, r, err := m.Begin(ctx, key, fp, "cid-other")
	if err != nil || tk2 != nil || r == nil {
		t.Fatalf("second Begin = %v, %v, %v", tk2, r, err)
	}
	want := idem.Replay{Status: 200, Body: []byte(`{"orderId":7}`), ClientOrderID: "cid-1", VenueOrderID: "v1",
		Header: http.Header{"Content-Type": {"application/json"}}}
	if fmt.Sprint(*r) != fmt.Sprint(want) {
		t.Fatalf("replay\n%+v\nwant\n%+v", *r, want)
	}
	if err := tk.Done(ctx, answer("x")); !errors.Is(err, idem.ErrTicketFinished) {
		t.Fatalf("second Done = %v", err)
	}
	if err := tk.Abort(ctx); !errors.Is(err, idem.ErrTicketFinished) {
		t.Fatalf("Abort after Done = %v", err)
	}
}

// TestConcurrentBegin: 20 goroutines Begin one key; exactly one gets a
// ticket, every other one the answer stored by Done (waiting for it, or
// reading it back), and nothing else.
func TestConcurrentBegin(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		tickets int
		replays int
		others  []error
	)
	start := make(chan struct{})
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tk, r, err := m.Begin(ctx, key, fp, "cid")
			switch {
			case err != nil:
				mu.Lock()
				others = append(others, err)
				mu.Unlock()
			case tk != nil:
				mu.Lock()
				tickets++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // the order is "in flight"
				if err := tk.Done(ctx, answer(`{"orderId":1}`)); err != nil {
					t.Error(err)
				}
			case r != nil:
				if string(r.Body) != `{"orderId":1}` {
					t.Errorf("replay body %q", r.Body)
				}
				mu.Lock()
				replays++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if tickets != 1 || replays != 19 || len(others) != 0 {
		t.Fatalf("tickets %d replays %d errors %v", tickets, replays, others)
	}
}

func TestKeyReused(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	tk, _, err := m.Begin(ctx, key, fp, "cid")
	if err != nil {
		t.Fatal(err)
	}
	// While the first is live, and after it is done.
	if _, _, err := m.Begin(ctx, key, []byte("other"), "cid"); !errors.Is(err, idem.ErrKeyReused) {
		t.Fatalf("live: %v", err)
	}
	if err := tk.Done(ctx, answer("{}")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Begin(ctx, key, []byte("other"), "cid"); !errors.Is(err, idem.ErrKeyReused) {
		t.Fatalf("done: %v", err)
	}
	// Another scope is another key.
	if tk, _, err := m.Begin(ctx, idem.Key{Scope: "tok_2/binance", Value: key.Value}, []byte("other"), "cid"); err != nil || tk == nil {
		t.Fatalf("other scope: %v %v", tk, err)
	}
}

func TestWindowExpiry(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	m, db, _ := newManager(t, idem.Options{Now: c.Now, Window: time.Hour, PruneEvery: -1})
	tk, _, _ := m.Begin(ctx, key, fp, "cid")
	if err := tk.Done(ctx, answer("first")); err != nil {
		t.Fatal(err)
	}
	other := idem.Key{Scope: key.Scope, Value: "order-2"}
	tk2, _, _ := m.Begin(ctx, other, fp, "cid2")
	_ = tk2.Done(ctx, answer("second"))

	c.Advance(59 * time.Minute)
	if _, r, err := m.Begin(ctx, key, fp, "cid"); err != nil || r == nil {
		t.Fatalf("inside the window: %v %v", r, err)
	}
	c.Advance(2 * time.Minute)
	// Expired: the key is new again, even for another order.
	tk, r, err := m.Begin(ctx, key, []byte("new order"), "cid9")
	if err != nil || tk == nil || r != nil {
		t.Fatalf("after the window: %v %v %v", tk, r, err)
	}
	_ = tk.Abort(ctx)
	// Prune removes the other expired row.
	n, err := m.Prune(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if _, err := db.Idempotency().Get(ctx, other.Scope, other.Value); err == nil {
		t.Fatal("pruned row still there")
	}
}

// TestBackgroundPrune: Begin starts a prune when one is due.
func TestBackgroundPrune(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	m, db, _ := newManager(t, idem.Options{Now: c.Now, Window: time.Hour, PruneEvery: time.Minute})
	tk, _, _ := m.Begin(ctx, key, fp, "cid")
	_ = tk.Done(ctx, answer("x"))
	c.Advance(2 * time.Hour)
	if tk, _, err := m.Begin(ctx, idem.Key{Scope: "s", Value: "v"}, fp, "c"); err != nil {
		t.Fatal(err)
	} else {
		_ = tk.Abort(ctx)
	}
	_ = m.Close() // waits for the prune
	if _, err := db.Idempotency().Get(ctx, key.Scope, key.Value); err == nil {
		t.Fatal("expired row not pruned in the background")
	}
	if _, _, err := m.Begin(ctx, key, fp, "cid"); !errors.Is(err, idem.ErrClosed) {
		t.Fatalf("Begin after Close = %v", err)
	}
}

// TestCrash: a pending row left by a process that died answers
// UnknownError after a restart; Reopen refuses it until PendingTimeout has
// passed, then hands out a ticket with the same client order id.
func TestCrash(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "k.db")
	db := openDB(t, path)
	m, err := idem.New(idem.Options{Store: db.Idempotency(), Secret: secret, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if tk, _, err := m.Begin(ctx, key, fp, "cid-crash"); err != nil || tk == nil {
		t.Fatal(err)
	}
	_ = m.Close() // the process dies with the order in flight
	_ = db.Close()

	db = openDB(t, path)
	t.Cleanup(func() { _ = db.Close() })
	m = managerOn(t, db, idem.Options{Now: c.Now})
	var ue *idem.UnknownError
	if _, _, err := m.Begin(ctx, key, fp, "cid-new"); !errors.As(err, &ue) || ue.ClientOrderID != "cid-crash" {
		t.Fatalf("Begin after restart = %v", err)
	}
	if _, _, err := m.Reopen(ctx, key, fp); !errors.Is(err, idem.ErrPending) {
		t.Fatalf("Reopen of a young pending row = %v", err)
	}
	c.Advance(idem.DefaultPendingTimeout + time.Second)
	if _, _, err := m.Reopen(ctx, key, []byte("other")); !errors.Is(err, idem.ErrKeyReused) {
		t.Fatalf("Reopen with another fingerprint = %v", err)
	}
	tk, _, err := m.Reopen(ctx, key, fp)
	if err != nil || tk == nil || tk.ClientOrderID() != "cid-crash" {
		t.Fatalf("Reopen = %v, %v", tk, err)
	}
	if _, _, err := m.Reopen(ctx, key, fp); !errors.Is(err, idem.ErrPending) {
		t.Fatalf("second Reopen = %v", err)
	}
	if err := tk.Done(ctx, answer("placed")); err != nil {
		t.Fatal(err)
	}
	if _, r, err := m.Begin(ctx, key, fp, "x"); err != nil || string(r.Body) != "placed" || r.ClientOrderID != "cid-crash" {
		t.Fatalf("Begin after Reopen+Done = %+v, %v", r, err)
	}
}

func TestUnknownThenResolve(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	tk, _, _ := m.Begin(ctx, key, fp, "cid-u")
	if err := m.Resolve(ctx, key, answer("{}")); !errors.Is(err, idem.ErrPending) {
		t.Fatalf("Resolve of a live key = %v", err)
	}
	if err := tk.Unknown(ctx); err != nil {
		t.Fatal(err)
	}
	var ue *idem.UnknownError
	if _, _, err := m.Begin(ctx, key, fp, "cid-u"); !errors.As(err, &ue) || ue.ClientOrderID != "cid-u" {
		t.Fatalf("Begin after Unknown = %v", err)
	}
	if err := m.Resolve(ctx, key, idem.Replay{Status: 200, Body: []byte(`{"found":true}`), VenueOrderID: "v77"}); err != nil {
		t.Fatal(err)
	}
	_, r, err := m.Begin(ctx, key, fp, "cid-u")
	if err != nil || r == nil || r.VenueOrderID != "v77" || r.ClientOrderID != "cid-u" || string(r.Body) != `{"found":true}` {
		t.Fatalf("Begin after Resolve = %+v, %v", r, err)
	}
	// Resolving again keeps the first answer.
	if err := m.Resolve(ctx, key, idem.Replay{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if _, r, _ := m.Begin(ctx, key, fp, "cid-u"); r.Status != 200 {
		t.Fatalf("status %d after a second Resolve", r.Status)
	}
	if err := m.Resolve(ctx, idem.Key{Scope: "s", Value: "none"}, idem.Replay{}); !errors.Is(err, idem.ErrNoSuchKey) {
		t.Fatalf("Resolve of a missing key = %v", err)
	}
}

// TestUnknownThenReopen: a lookup said "no such order": Reopen only once
// PendingTimeout has passed since the outcome became unknown (a venue
// may not have processed the order yet), then send again.
func TestUnknownThenReopen(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	m, _, _ := newManager(t, idem.Options{Now: clk.Now, PendingTimeout: time.Minute})
	tk, _, _ := m.Begin(ctx, key, fp, "cid-r")
	_ = tk.Unknown(ctx)
	if _, _, err := m.Reopen(ctx, key, fp); !errors.Is(err, idem.ErrPending) {
		t.Fatalf("Reopen right after the unknown outcome = %v, want ErrPending", err)
	}
	clk.Advance(time.Minute)
	tk, _, err := m.Reopen(ctx, key, fp)
	if err != nil || tk.ClientOrderID() != "cid-r" {
		t.Fatalf("Reopen = %v", err)
	}
	// A Begin meanwhile waits for the reopened ticket.
	got := make(chan *idem.Replay)
	go func() {
		_, r, err := m.Begin(ctx, key, fp, "cid-r")
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	time.Sleep(10 * time.Millisecond)
	_ = tk.Done(ctx, answer("second try"))
	if r := <-got; r == nil || string(r.Body) != "second try" {
		t.Fatalf("waiter got %+v", r)
	}
	if _, _, err := m.Reopen(ctx, idem.Key{Scope: "s", Value: "none"}, fp); !errors.Is(err, idem.ErrNoSuchKey) {
		t.Fatalf("Reopen of a missing key = %v", err)
	}
}

func TestWaiterGetsUnknown(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	tk, _, _ := m.Begin(ctx, key, fp, "cid-w")
	errc := make(chan error)
	go func() {
		_, _, err := m.Begin(ctx, key, fp, "cid-w")
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	_ = tk.Unknown(ctx)
	var ue *idem.UnknownError
	if err := <-errc; !errors.As(err, &ue) || ue.ClientOrderID != "cid-w" {
		t.Fatalf("waiter: %v", err)
	}
}

func TestWaitIsContextBounded(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	tk, _, _ := m.Begin(ctx, key, fp, "cid")
	defer func() { _ = tk.Abort(ctx) }()
	c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, _, err := m.Begin(c, key, fp, "cid"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin = %v", err)
	}
}

func TestAbortFreesKey(t *testing.T) {
	m, db, _ := newManager(t, idem.Options{})
	tk, _, _ := m.Begin(ctx, key, fp, "cid")
	errc := make(chan error)
	var waiter *idem.Ticket
	go func() {
		var err error
		waiter, _, err = m.Begin(ctx, key, fp, "cid")
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := tk.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	// The waiter tries again and gets the key.
	if err := <-errc; err != nil || waiter == nil {
		t.Fatalf("waiter after Abort: %v %v", waiter, err)
	}
	_ = waiter.Abort(ctx)
	if _, err := db.Idempotency().Get(ctx, key.Scope, key.Value); err == nil {
		t.Fatal("aborted key still stored")
	}
	if tk, _, err := m.Begin(ctx, key, []byte("another order"), "cid"); err != nil || tk == nil {
		t.Fatalf("Begin after Abort: %v", err)
	}
}

func TestBodyCap(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{MaxBody: 8})
	tk, _, _ := m.Begin(ctx, key, fp, "cid")
	_ = tk.Done(ctx, answer("0123456789"))
	_, r, err := m.Begin(ctx, key, fp, "cid")
	if err != nil || r.Body != nil || !r.BodyDropped || r.Status != 200 || r.VenueOrderID != "v1" {
		t.Fatalf("replay %+v, %v", r, err)
	}
}

func TestSeed(t *testing.T) {
	m, _, _ := newManager(t, idem.Options{})
	m2, _, _ := newManager(t, idem.Options{Secret: bytes.Repeat([]byte{7}, 32)})
	a := m.Seed(key)
	if a != m.Seed(key) {
		t.Fatal("Seed not deterministic")
	}
	for _, k := range []idem.Key{{Scope: key.Scope, Value: "order-2"}, {Scope: "tok_2/binance", Value: key.Value},
		{Scope: key.Scope + "o", Value: "rder-1"}} {
		if m.Seed(k) == a {
			t.Fatalf("Seed(%v) = Seed(%v)", k, key)
		}
	}
	if m2.Seed(key) == a {
		t.Fatal("Seed ignores the secret")
	}
}

func TestOptionsAndKeys(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "k.db"))
	defer db.Close()
	for _, o := range []idem.Options{{}, {Store: db.Idempotency()}, {Store: db.Idempotency(), Secret: secret, Window: -1}} {
		if _, err := idem.New(o); err == nil {
			t.Fatalf("New(%+v) accepted", o)
		}
	}
	m := managerOn(t, db, idem.Options{})
	for _, k := range []idem.Key{{}, {Scope: "s"}, {Value: "v"}, {Scope: "s", Value: string(make([]byte, idem.MaxKeyLen+1))}} {
		if _, _, err := m.Begin(ctx, k, fp, "c"); !errors.Is(err, idem.ErrBadKey) {
			t.Fatalf("Begin(%q) = %v", k, err)
		}
	}
}

// BenchmarkBeginDone measures one order's idempotency cost on SQLite: a
// durable claim and a durable answer (two transactions).
func BenchmarkBeginDone(b *testing.B) {
	m, _, _ := newManager(b, idem.Options{PruneEvery: -1})
	a := answer(`{"symbol":"BTCUSDT","orderId":28,"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","status":"NEW"}`)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		tk, _, err := m.Begin(ctx, idem.Key{Scope: key.Scope, Value: fmt.Sprint("k", i)}, fp, "cid")
		if err != nil {
			b.Fatal(err)
		}
		if err := tk.Done(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}

// failSwap is the real SQLite store with Swap failing, as a full disk or a
// crash before the write would leave it.
type failSwap struct{ idem.Store }

func (failSwap) Swap(context.Context, idem.Record, string) error { return errors.New("disk full") }

// TestDoneLater: waiters and later Begins get the answer at once; the
// store holds it once Close returns; a lost background write leaves the
// key pending, which answers UnknownError (a lookup, never a resend).
func TestDoneLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	db := openDB(t, path)
	m, err := idem.New(idem.Options{Store: db.Idempotency(), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tk, _, err := m.Begin(ctx, key, fp, "cid-later")
	if err != nil || tk == nil {
		t.Fatalf("Begin = %v, %v", tk, err)
	}
	const waiters = 5
	got := make(chan string, waiters)
	var started sync.WaitGroup
	for i := 0; i < waiters; i++ {
		started.Add(1)
		go func() {
			started.Done()
			_, r, err := m.Begin(ctx, key, fp, "cid-other")
			if err != nil || r == nil {
				got <- fmt.Sprintf("error %v", err)
				return
			}
			got <- string(r.Body) + " " + r.ClientOrderID
		}()
	}
	started.Wait()
	if err := tk.DoneLater(ctx, answer(`{"orderId":9}`)); err != nil {
		t.Fatal(err)
	}
	if err := tk.Done(ctx, answer("x")); !errors.Is(err, idem.ErrTicketFinished) {
		t.Fatalf("Done after DoneLater = %v", err)
	}
	if err := tk.DoneLater(ctx, answer("x")); !errors.Is(err, idem.ErrTicketFinished) {
		t.Fatalf("second DoneLater = %v", err)
	}
	for i := 0; i < waiters; i++ {
		if s := <-got; s != `{"orderId":9} cid-later` {
			t.Fatalf("waiter got %s", s)
		}
	}
	if _, r, err := m.Begin(ctx, key, fp, "x"); err != nil || r == nil || string(r.Body) != `{"orderId":9}` {
		t.Fatalf("Begin after DoneLater = %+v, %v", r, err)
	}
	if _, _, err := m.Begin(ctx, key, []byte("other order"), "x"); !errors.Is(err, idem.ErrKeyReused) {
		t.Fatalf("Begin with another fingerprint = %v", err)
	}
	_ = m.Close()
	rec, err := db.Idempotency().Get(ctx, key.Scope, key.Value)
	if err != nil || rec.State != idem.StateDone || string(rec.Replay.Body) != `{"orderId":9}` {
		t.Fatalf("stored after Close = %+v, %v", rec, err)
	}
	_ = db.Close()

	// The background write is lost: the key stays pending.
	db = openDB(t, path)
	t.Cleanup(func() { _ = db.Close() })
	key2 := idem.Key{Scope: key.Scope, Value: "order-2"}
	m = managerOn(t, db, idem.Options{Store: failSwap{db.Idempotency()}})
	tk, _, err = m.Begin(ctx, key2, fp, "cid-lost")
	if err != nil || tk == nil {
		t.Fatalf("Begin = %v, %v", tk, err)
	}
	if err := tk.DoneLater(ctx, answer("lost")); err != nil {
		t.Fatal(err)
	}
	_ = m.Close()
	m = managerOn(t, db, idem.Options{})
	var ue *idem.UnknownError
	if _, _, err := m.Begin(ctx, key2, fp, "cid-new"); !errors.As(err, &ue) || ue.ClientOrderID != "cid-lost" {
		t.Fatalf("Begin after a lost answer = %v", err)
	}
	// After Close, DoneLater stores synchronously.
	m2 := managerOn(t, db, idem.Options{})
	key3 := idem.Key{Scope: key.Scope, Value: "order-3"}
	tk, _, err = m2.Begin(ctx, key3, fp, "cid-3")
	if err != nil || tk == nil {
		t.Fatalf("Begin = %v, %v", tk, err)
	}
	_ = m2.Close()
	if err := tk.DoneLater(ctx, answer("sync")); err != nil {
		t.Fatal(err)
	}
	if rec, err := db.Idempotency().Get(ctx, key3.Scope, key3.Value); err != nil || rec.State != idem.StateDone {
		t.Fatalf("stored after DoneLater on a closed manager = %+v, %v", rec, err)
	}
}
