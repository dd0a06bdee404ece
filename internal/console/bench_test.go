package console

import (
	"context"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// BenchmarkStatsRecord: what the console adds to each gateway request
// (Stats.Record, a non-blocking hand-off), against a sink that does
// nothing, from parallel callers as on the request path.
func BenchmarkStatsRecord(b *testing.B) {
	e := audit.Event{Time: time.Now(), Venue: "binance", TokenID: "tok_ab12cd34", Source: "127.0.0.1", Decision: audit.Allow,
		Latency: time.Millisecond, UpstreamLatency: 800 * time.Microsecond}
	for _, tc := range []struct {
		name string
		sink func() (audit.Sink, func())
	}{
		{"baseline-discard", func() (audit.Sink, func()) { return audit.Discard{}, func() {} }},
		{"stats", func() (audit.Sink, func()) { s := NewStats(nil); return s, s.Close }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sink, done := tc.sink()
			defer done()
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sink.Record(ctx, e)
				}
			})
			if s, ok := sink.(*Stats); ok {
				b.ReportMetric(float64(s.Dropped())/float64(b.N), "dropped/op")
			}
		})
	}
}
