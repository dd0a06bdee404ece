package console_test

import (
	"context"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/console"
)

// The gateway feeds Stats as one more audit.Sink; the overview reads
// snapshots of the last seconds.
func ExampleNewStats() {
	start := time.Unix(1_800_000_000, 0)
	now := start
	stats := console.NewStats(func() time.Time { return now })
	ctx := context.Background()
	for i := range 4 {
		d := audit.Allow
		if i == 3 {
			d = audit.Deny
		}
		stats.Record(ctx, audit.Event{Time: start, Venue: "binance", TokenID: "tok_ab12cd34", Source: "127.0.0.1", Decision: d, Latency: time.Millisecond})
	}
	stats.Close() // waits for the folder; later events are dropped
	now = start.Add(2 * time.Second)
	snap := stats.Snapshot(10)
	fmt.Println(snap.Req, "requests,", snap.Deny, "denied")
	for _, v := range snap.Venues {
		fmt.Println(v.Name, v.Req)
	}
	seen, _ := stats.Seen("tok_ab12cd34")
	fmt.Println(seen.Sources)
	// Output:
	// 4 requests, 1 denied
	// binance 4
	// [127.0.0.1]
}
