package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keystile/keystile/internal/audit"
)

// Example writes an intent and an outcome to a JSONL log, closes it (final
// signed checkpoint) and verifies the file.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "audit")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.jsonl")

	store, err := audit.OpenJSONL(path)
	if err != nil {
		panic(err)
	}
	keys := testKeys() // the app uses app.AuditKeys(ctx, vault)
	l, err := audit.Open(ctx, audit.Options{Store: store, Keys: keys})
	if err != nil {
		panic(err)
	}
	e := audit.Event{RequestID: "r1", TokenID: "tok_1", Venue: "binance", Operation: "order.place", Decision: audit.Allow}
	if err := l.Intent(ctx, e); err != nil {
		fmt.Println("refuse the order with 503:", err)
		return
	}
	e.Status = 200
	l.Record(ctx, e)
	if err := l.Close(ctx); err != nil {
		panic(err)
	}

	r, _ := audit.OpenJSONLReader(path)
	rep, err := audit.Verify(ctx, r, keys.PublicKey())
	fmt.Printf("%+v %v\n", rep, err)
	// Output: {Records:2 Checkpoints:1 LastSeq:2 LastCheckpointSeq:2 Unsigned:0} <nil>
}
