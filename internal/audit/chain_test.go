package audit_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// TestChain: records chain on from the head, a checkpoint falls due every
// N records, Reset puts the head back (a batch that did not commit), and
// Pending signs an uncovered tail once.
func TestChain(t *testing.T) {
	keys := testKeys()
	c, err := audit.NewChain(keys, 3, audit.Head{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var recs []audit.Record
	var due []uint64
	for i := range 4 {
		r := keys.Record(event(i), audit.KindIntent)
		if cp, ok := c.Seal(&r, now); ok {
			due = append(due, cp.Seq)
		}
		recs = append(recs, r)
	}
	if fmt.Sprint(due) != "[3]" || c.Head().Seq != 4 || c.Head().CheckpointSeq != 3 {
		t.Fatalf("checkpoints %v, head %+v", due, c.Head())
	}
	if recs[0].Prev != string(bytes.Repeat([]byte("0"), 64)) || recs[1].Prev != recs[0].Hash || recs[3].Prev != recs[2].Hash {
		t.Fatal("records do not chain")
	}
	mark := c.Head()
	r := keys.Record(event(9), audit.KindOutcome)
	c.Seal(&r, now)
	c.Reset(mark)
	again := keys.Record(event(9), audit.KindOutcome)
	c.Seal(&again, now)
	if again.Seq != 5 || again.Prev != recs[3].Hash || again.Hash != r.Hash {
		t.Fatalf("after Reset: seq %d prev %s", again.Seq, again.Prev)
	}
	cp, ok := c.Pending(now)
	if !ok || cp.Seq != 5 || cp.Hash != again.Hash {
		t.Fatalf("pending %+v %v", cp, ok)
	}
	if _, ok := c.Pending(now); ok {
		t.Fatal("a covered head has no pending checkpoint")
	}
	for _, bad := range []audit.Keys{{}, {Checkpoint: keys.Checkpoint}} {
		if _, err := audit.NewChain(bad, 0, audit.Head{}); err == nil {
			t.Fatal("NewChain accepted incomplete keys")
		}
	}
	if _, err := audit.NewChain(keys, -1, audit.Head{}); err == nil {
		t.Fatal("NewChain accepted a negative interval")
	}
}

// TestRecorder: the same records as Keys.Record, from any goroutine.
func TestRecorder(t *testing.T) {
	keys := testKeys()
	rec := audit.NewRecorder(keys)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 { // more identifiers than it keeps
				e := event(i)
				e.TokenID, e.Source = fmt.Sprint("tok_", g*10000+i%4500), fmt.Sprint("10.0.", g, ".", i%200)
				a, b := rec.Record(e, audit.KindOutcome), keys.Record(e, audit.KindOutcome)
				if a.Token != b.Token || a.Source != b.Source || a.Token == "" || a.RequestID != b.RequestID {
					t.Errorf("record %d: %+v vs %+v", i, a, b)
					return
				}
			}
		})
	}
	wg.Wait()
	if r := rec.Record(audit.Event{RequestID: "no ids"}, audit.KindOutcome); r.Token != "" || r.Source != "" {
		t.Fatalf("empty identifiers hashed: %+v", r)
	}
}
