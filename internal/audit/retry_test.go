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

// TestRetained: failed records go before those kept earlier; beyond
// MaxRetained the newest are dropped; Take hands out the oldest; pauses
// double from RetryFirst to RetryMax and start over after Reset.
func TestRetained(t *testing.T) {
	var r audit.Retained[int]
	if r.Keep([]int{3, 4}) != 0 || r.Keep([]int{1, 2}) != 0 || r.Len() != 4 {
		t.Fatalf("len %d", r.Len())
	}
	if got := r.Take(nil, 3); len(got) != 3 || got[0] != 1 || got[2] != 3 || r.Len() != 1 {
		t.Fatalf("take %v, left %d", got, r.Len())
	}
	big := make([]int, audit.MaxRetained+9)
	for i := range big {
		big[i] = 100 + i
	}
	if over := r.Keep(big); over != 10 || r.Len() != audit.MaxRetained {
		t.Fatalf("over %d, len %d", over, r.Len())
	}
	if got := r.Take(nil, 1); got[0] != 100 {
		t.Fatalf("oldest %v", got)
	}
	want := []time.Duration{audit.RetryFirst, 2 * audit.RetryFirst, 4 * audit.RetryFirst, 8 * audit.RetryFirst, audit.RetryMax, audit.RetryMax}
	for i, w := range want {
		if d := r.Pause(); d != w {
			t.Fatalf("pause %d: %v, want %v", i, d, w)
		}
	}
	r.Reset()
	if d := r.Pause(); d != audit.RetryFirst {
		t.Fatalf("after Reset: %v", d)
	}
	if n := r.Drain(); n != audit.MaxRetained-1 || r.Len() != 0 {
		t.Fatalf("drain %d, len %d", n, r.Len())
	}
}
