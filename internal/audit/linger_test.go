package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// TestLingerBatchesOutcomes: outcome records nobody waits for are
// committed in few, large batches; an intent arriving meanwhile is made
// durable at once, not after the linger.
func TestLingerBatchesOutcomes(t *testing.T) {
	ctx := context.Background()
	b := backends()[0]
	l, err := audit.Open(ctx, audit.Options{Store: b.open(t, b.file(t)), Keys: testKeys(), Linger: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Records trickle in, each after the writer went idle.
	for range 20 {
		l.Record(ctx, audit.Event{RequestID: "r", Method: "GET", Path: "/x", Decision: audit.Allow, Status: 200})
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := l.Intent(ctx, audit.Event{RequestID: "w", Method: "POST", Path: "/o", Decision: audit.Allow}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("intent waited %v behind lingering outcome records", d)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Records != 21 || st.Batches > 4 {
		t.Fatalf("stats %+v: want 21 records in a few batches", st)
	}
}
