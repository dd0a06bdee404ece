package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/store"
)

func idemRec(owner string, at time.Time) idem.Record {
	return idem.Record{Scope: "tok/binance", Key: "k1", Fingerprint: []byte{1, 2, 3}, ClientOrderID: "cid",
		State: idem.StatePending, Owner: owner, Created: at, Updated: at,
		Replay: idem.Replay{Header: http.Header{}, ClientOrderID: "cid"}}
}

// Idempotency checks an idem.Store: exact round trips, claims that take
// only free or expired keys, compare-and-swap on the owner with the
// sentinel errors, deletes by owner and by age, one winner among
// concurrent claims, and SwapLater when the store is an idem.LaterStore.
// open returns a store on a fresh, empty database.
func Idempotency(t *testing.T, open func(t *testing.T) idem.Store) {
	t.Run("Store", func(t *testing.T) { idemStore(t, open(t)) })
	t.Run("AnswerNeedsTheClaim", func(t *testing.T) { idemAnswerNeedsTheClaim(t, open(t)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { idemConcurrentClaims(t, open(t)) })
	t.Run("SwapLater", func(t *testing.T) { idemSwapLater(t, open(t)) })
	t.Run("Manager", func(t *testing.T) { idemManager(t, open(t)) })
}

func idemStore(t *testing.T, s idem.Store) {
	ctx := context.Background()
	at := time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.UTC)
	if _, err := s.Get(ctx, "tok/binance", "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of nothing = %v", err)
	}
	a := idemRec("a", at)
	got, claimed, err := s.Claim(ctx, a, at.Add(-time.Hour))
	if err != nil || !claimed || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("Claim = %+v %v %v", got, claimed, err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("Get = %+v, %v\nwant %+v", got, err, a)
	}
	b := idemRec("b", at.Add(time.Minute))
	got, claimed, err = s.Claim(ctx, b, at.Add(-time.Hour))
	if err != nil || claimed || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("second Claim = %+v %v %v", got, claimed, err)
	}
	// A record created exactly at notBefore is not expired.
	if got, claimed, err = s.Claim(ctx, b, at); err != nil || claimed || got.Owner != "a" {
		t.Fatalf("Claim with notBefore = created = %+v %v %v", got, claimed, err)
	}
	// Swap is compare-and-swap on the owner.
	done := a
	done.State, done.Updated = idem.StateDone, at.Add(time.Second)
	done.Replay = idem.Replay{Status: 201, Header: http.Header{"Content-Type": {"application/json"}, "X-Two": {"1", "2"}},
		Body: []byte(`{"x":1}`), BodyDropped: false, ClientOrderID: "cid", VenueOrderID: "v9"}
	if err := s.Swap(ctx, done, "b"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Swap with the wrong owner = %v", err)
	}
	if err := s.Swap(ctx, done, "a"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || fmt.Sprint(got) != fmt.Sprint(done) {
		t.Fatalf("Get = %+v, %v\nwant %+v", got, err, done)
	}
	missing := done
	missing.Key = "nope"
	if err := s.Swap(ctx, missing, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Swap of a missing key = %v", err)
	}
	// A dropped body round-trips as such.
	dropped := done
	dropped.Replay.Body, dropped.Replay.BodyDropped = nil, true
	if err := s.Swap(ctx, dropped, "a"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || !got.Replay.BodyDropped || got.Replay.Body != nil {
		t.Fatalf("dropped body: %+v %v", got, err)
	}
	// An expired row is replaced by a new claim.
	got, claimed, err = s.Claim(ctx, b, at.Add(time.Nanosecond))
	if err != nil || !claimed || got.Owner != "b" {
		t.Fatalf("Claim over an expired row = %+v %v %v", got, claimed, err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || fmt.Sprint(got) != fmt.Sprint(b) {
		t.Fatalf("the replaced record keeps something of the old one: %+v, %v\nwant %+v", got, err, b)
	}
	if n, err := s.Delete(ctx, "tok/binance", "k1", "a", time.Time{}); err != nil || n != 0 {
		t.Fatalf("Delete with the wrong owner = %d %v", n, err)
	}
	if n, err := s.Delete(ctx, "tok/binance", "k1", "b", time.Time{}); err != nil || n != 1 {
		t.Fatalf("Delete = %d %v", n, err)
	}
	if _, err := s.Get(ctx, "tok/binance", "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	// Prune by age; scopes keep keys apart.
	for i, ts := range []time.Time{at, at.Add(time.Hour), at.Add(2 * time.Hour)} {
		r := idemRec("o", ts)
		r.Key = fmt.Sprint("p", i)
		if _, ok, err := s.Claim(ctx, r, time.Time{}); err != nil || !ok {
			t.Fatal(err)
		}
		r.Scope = "tok/okx"
		if _, ok, err := s.Claim(ctx, r, time.Time{}); err != nil || !ok {
			t.Fatalf("the same key in another scope: %v %v", ok, err)
		}
	}
	if n, err := s.Delete(ctx, "", "", "", time.Time{}); err != nil || n != 0 {
		t.Fatalf("prune before the zero time = %d %v", n, err)
	}
	if n, err := s.Delete(ctx, "", "", "", at.Add(90*time.Minute)); err != nil || n != 4 {
		t.Fatalf("prune = %d %v", n, err)
	}
	if _, err := s.Get(ctx, "tok/binance", "p2"); err != nil {
		t.Fatalf("young row pruned: %v", err)
	}
	if _, err := s.Get(ctx, "tok/okx", "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old row kept: %v", err)
	}
}

// idemAnswerNeedsTheClaim: a ticket's answer is stored only while its
// claim stands as it was claimed: after the key was reopened by another
// owner, or forgotten and claimed again, the old owner's answer is
// refused.
func idemAnswerNeedsTheClaim(t *testing.T, s idem.Store) {
	ctx := context.Background()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	done := func(owner string) idem.Record {
		r := idemRec(owner, at)
		r.State, r.Updated = idem.StateDone, at.Add(time.Second)
		r.Replay = idem.Replay{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"ok":1}`), ClientOrderID: "cid"}
		return r
	}
	if _, ok, err := s.Claim(ctx, idemRec("a", at), time.Time{}); err != nil || !ok {
		t.Fatal(err)
	}
	unknown := idemRec("a", at)
	unknown.State = idem.StateUnknown
	if err := s.Swap(ctx, unknown, "a"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || got.State != idem.StateUnknown {
		t.Fatalf("Get = %+v %v", got, err)
	}
	if err := s.Swap(ctx, idemRec("b", at), "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Swap(ctx, done("a"), "a"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("answer of a reopened key's old owner = %v", err)
	}
	if err := s.Swap(ctx, done("b"), "b"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || got.State != idem.StateDone || got.Owner != "b" {
		t.Fatalf("Get = %+v %v", got, err)
	}
	if _, err := s.Delete(ctx, "tok/binance", "k1", "b", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Claim(ctx, idemRec("c", at), time.Time{}); err != nil || !ok {
		t.Fatal(err)
	}
	if err := s.Swap(ctx, done("b"), "b"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("answer of a forgotten claim's owner = %v", err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || got.State != idem.StatePending || got.Owner != "c" {
		t.Fatalf("Get = %+v %v", got, err)
	}
	if err := s.Swap(ctx, done("c"), "c"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || got.State != idem.StateDone || string(got.Replay.Body) != `{"ok":1}` ||
		got.Replay.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("Get = %+v %v", got, err)
	}
}

// idemConcurrentClaims: 16 claims of one key at once, twice (a fresh key,
// then over an expired record): exactly one wins each time, and every
// loser is told the winner's record.
func idemConcurrentClaims(t *testing.T, s idem.Store) {
	ctx := context.Background()
	at := time.Now()
	for round := range 2 {
		created := at.Add(time.Duration(round) * time.Hour)
		type result struct {
			stored idem.Record
			won    bool
			owner  string
		}
		results := make(chan result, 16)
		for i := range 16 {
			go func() {
				owner := fmt.Sprint("o", round, ".", i)
				stored, ok, err := s.Claim(ctx, idemRec(owner, created), created.Add(-time.Minute))
				if err != nil {
					t.Error(err)
				}
				results <- result{stored, ok, owner}
			}()
		}
		var winner string
		var losers []idem.Record
		for range 16 {
			r := <-results
			if r.won {
				if winner != "" {
					t.Fatalf("round %d: %s and %s both won", round, winner, r.owner)
				}
				winner = r.owner
			} else {
				losers = append(losers, r.stored)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no claim won", round)
		}
		for _, l := range losers {
			if l.Owner != winner {
				t.Fatalf("round %d: a loser was told %q won, not %q", round, l.Owner, winner)
			}
		}
	}
}

// idemSwapLater: a LaterStore's queued swap is durable when done is told
// nil, and a lost compare-and-swap reaches done as store.ErrConflict.
func idemSwapLater(t *testing.T, s idem.Store) {
	ls, ok := s.(idem.LaterStore)
	if !ok {
		t.Skip("not an idem.LaterStore")
	}
	ctx := context.Background()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, ok, err := s.Claim(ctx, idemRec("a", at), time.Time{}); err != nil || !ok {
		t.Fatal(err)
	}
	rec := idemRec("a", at)
	rec.State, rec.Replay.Status, rec.Replay.Body = idem.StateDone, 200, []byte(`{}`)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, owner := range []string{"a", "zz"} {
		wg.Add(1)
		if err := ls.SwapLater(rec, owner, func(err error) { errs[i] = err; wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if errs[0] != nil || !errors.Is(errs[1], store.ErrConflict) {
		t.Fatalf("SwapLater: %v, %v", errs[0], errs[1])
	}
	if got, err := s.Get(ctx, "tok/binance", "k1"); err != nil || got.State != idem.StateDone || string(got.Replay.Body) != `{}` {
		t.Fatalf("Get = %+v %v", got, err)
	}
}

// idemManager: the idem.Manager on the store: a key is sent once and its
// answer replayed; a reused key with another order is refused.
func idemManager(t *testing.T, s idem.Store) {
	ctx := context.Background()
	m, err := idem.New(idem.Options{Store: s, Secret: []byte("0123456789abcdef0123456789abcdef"), PruneEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	k := idem.Key{Scope: "tok/binance", Value: "order-1"}
	tk, rep, err := m.Begin(ctx, k, []byte("fp"), "cid-1")
	if err != nil || tk == nil || rep != nil {
		t.Fatalf("Begin = %v %v %v", tk, rep, err)
	}
	if err := tk.Done(ctx, idem.Replay{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"orderId":7}`)}); err != nil {
		t.Fatal(err)
	}
	tk, rep, err = m.Begin(ctx, k, []byte("fp"), "cid-2")
	if err != nil || tk != nil || rep == nil || string(rep.Body) != `{"orderId":7}` || rep.ClientOrderID != "cid-1" {
		t.Fatalf("repeat: %v %+v %v", tk, rep, err)
	}
	if _, _, err := m.Begin(ctx, k, []byte("other"), "cid-3"); !errors.Is(err, idem.ErrKeyReused) {
		t.Fatalf("reused key: %v", err)
	}
}
