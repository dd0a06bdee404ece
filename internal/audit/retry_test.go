package audit_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// outage is a real store whose appends fail while down is set (a full
// disk, a database away).
type outage struct {
	audit.Store
	down atomic.Bool
}

func (o *outage) Append(ctx context.Context, recs []audit.Record, cps []audit.Checkpoint) error {
	if o.down.Load() {
		return errors.New("no space left on device")
	}
	return o.Store.Append(ctx, recs, cps)
}

// TestOutcomesKeptThroughStoreFailure: outcome records whose batch fails
// are kept and written, in order and first, once the store accepts writes
// again; none is dropped and the log verifies. Records still kept when
// the log closes are dropped and counted.
func TestOutcomesKeptThroughStoreFailure(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	js, err := audit.OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	st := &outage{Store: js}
	l, err := audit.Open(ctx, audit.Options{Store: st, Keys: testKeys(), CheckpointEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func(audit.Stats) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(l.Stats()); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: stats %+v", what, l.Stats())
			}
		}
	}
	l.Record(ctx, event(1))
	waitFor("the first record", func(s audit.Stats) bool { return s.Records == 1 })
	st.down.Store(true)
	for i := 2; i <= 11; i++ {
		l.Record(ctx, event(i))
	}
	waitFor("a failed write", func(s audit.Stats) bool { return s.Failures > 0 })
	if err := l.Intent(ctx, event(12)); err == nil {
		t.Fatal("an intent was accepted while the store fails")
	}
	time.Sleep(700 * time.Millisecond) // retries meanwhile
	if s := l.Stats(); s.Dropped != 0 || s.Records != 1 {
		t.Fatalf("while failing: %+v", s)
	}
	st.down.Store(false)
	waitFor("the kept records", func(s audit.Stats) bool { return s.Records == 11 })
	if l.Healthy() != nil {
		t.Fatalf("healthy: %v", l.Healthy())
	}
	// A record kept when the log closes is dropped and counted.
	st.down.Store(true)
	l.Record(ctx, event(13))
	waitFor("the last failure", func(s audit.Stats) bool { return s.Failures > 2 })
	if err := l.Close(ctx); err == nil {
		t.Log("close wrote its checkpoint despite the failing store")
	}
	if s := l.Stats(); s.Dropped != 1 || s.Records != 11 {
		t.Fatalf("after close: %+v, want 11 written and the last one dropped", s)
	}
	st.down.Store(false)

	r, err := audit.OpenJSONLReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := audit.Verify(ctx, r, testKeys().PublicKey())
	if err != nil || rep.Records != 11 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	var ids []string
	if err := r.Scan(ctx, 1, func(rec audit.Record) error {
		ids = append(ids, rec.RequestID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if want := event(i + 1).RequestID; id != want {
			t.Fatalf("record %d is %s, want %s (kept records in order)", i+1, id, want)
		}
	}
}
