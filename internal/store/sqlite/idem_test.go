package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/sqlite"
)

func openIdem(t *testing.T) (*sqlite.DB, *sqlite.IdemStore) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, db.Idempotency()
}

func idemRec(owner string, at time.Time) idem.Record {
	return idem.Record{Scope: "tok/binance", Key: "k1", Fingerprint: []byte{1, 2, 3}, ClientOrderID: "cid",
		State: idem.StatePending, Owner: owner, Created: at, Updated: at,
		Replay: idem.Replay{Header: http.Header{}, ClientOrderID: "cid"}}
}

func TestIdemStore(t *testing.T) {
	ctx := context.Background()
	_, s := openIdem(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.UTC)
	if _, err := s.Get(ctx, "tok/binance", "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of nothing = %v", err)
	}
	a := idemRec("a", at)
	got, claimed, err := s.Claim(ctx, a, at.Add(-time.Hour))
	if err != nil || !claimed || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("Claim = %+v %v %v", got, claimed, err)
	}
	b := idemRec("b", at.Add(time.Minute))
	got, claimed, err = s.Claim(ctx, b, at.Add(-time.Hour))
	if err != nil || claimed || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("second Claim = %+v %v %v", got, claimed, err)
	}
	// Swap is compare-and-swap on the owner.
	done := a
	done.State, done.Updated = idem.StateDone, at.Add(time.Second)
	done.Replay = idem.Replay{Status: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"x":1}`),
		ClientOrderID: "cid", VenueOrderID: "v9"}
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
	// An expired row is replaced by a new claim.
	got, claimed, err = s.Claim(ctx, b, at.Add(time.Nanosecond))
	if err != nil || !claimed || got.Owner != "b" {
		t.Fatalf("Claim over an expired row = %+v %v %v", got, claimed, err)
	}
	if n, err := s.Delete(ctx, "tok/binance", "k1", "a", time.Time{}); err != nil || n != 0 {
		t.Fatalf("Delete with the wrong owner = %d %v", n, err)
	}
	if n, err := s.Delete(ctx, "tok/binance", "k1", "b", time.Time{}); err != nil || n != 1 {
		t.Fatalf("Delete = %d %v", n, err)
	}
	// Prune by age.
	for i, ts := range []time.Time{at, at.Add(time.Hour), at.Add(2 * time.Hour)} {
		r := idemRec("o", ts)
		r.Key = fmt.Sprint("p", i)
		if _, ok, err := s.Claim(ctx, r, time.Time{}); err != nil || !ok {
			t.Fatal(err)
		}
	}
	if n, err := s.Delete(ctx, "", "", "", at.Add(90*time.Minute)); err != nil || n != 2 {
		t.Fatalf("prune = %d %v", n, err)
	}
	if _, err := s.Get(ctx, "tok/binance", "p2"); err != nil {
		t.Fatalf("young row pruned: %v", err)
	}
}

// TestIdemStoreConcurrentClaims: many claims of one key on one database
// (separate connections): exactly one wins.
func TestIdemStoreConcurrentClaims(t *testing.T) {
	ctx := context.Background()
	_, s := openIdem(t)
	at := time.Now()
	wins := make(chan bool, 16)
	for i := 0; i < 16; i++ {
		go func() {
			_, ok, err := s.Claim(ctx, idemRec(fmt.Sprint("o", i), at), at.Add(-time.Hour))
			if err != nil {
				t.Error(err)
			}
			wins <- ok
		}()
	}
	n := 0
	for i := 0; i < 16; i++ {
		if <-wins {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d claims won", n)
	}
}

func TestIdemSchemaVersion(t *testing.T) {
	db, _ := openIdem(t)
	if v, err := db.SchemaVersion(context.Background()); err != nil || v < 5 {
		t.Fatalf("schema version %d, %v", v, err)
	}
}

// TestIdemAnswerNeedsTheClaim: a ticket's answer is stored only while its
// claim stands as it was claimed (the writer may remember the claim's row,
// but never past a change): after the key was reopened by another owner,
// or forgotten and claimed again, the old owner's answer is refused.
func TestIdemAnswerNeedsTheClaim(t *testing.T) {
	ctx := context.Background()
	_, s := openIdem(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	done := func(owner string) idem.Record {
		r := idemRec(owner, at)
		r.State, r.Updated = idem.StateDone, at.Add(time.Second)
		r.Replay = idem.Replay{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"ok":1}`), ClientOrderID: "cid"}
		return r
	}
	// Reopened: unknown, then taken over by b.
	if _, ok, err := s.Claim(ctx, idemRec("a", at), time.Time{}); err != nil || !ok {
		t.Fatal(err)
	}
	unknown := idemRec("a", at)
	unknown.State = idem.StateUnknown
	if err := s.Swap(ctx, unknown, "a"); err != nil {
		t.Fatal(err)
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
	// Forgotten and claimed again.
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
