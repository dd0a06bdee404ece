package audit_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// BenchmarkIntentDurable: many parallel callers each waiting for their
// intent to be durable (group commit, one fsync per batch). Reports
// records/s, commits (fsyncs)/s and the mean batch size.
func BenchmarkIntentDurable(b *testing.B) {
	for _, be := range backends() {
		for _, callers := range []int{256, 1024} {
			b.Run(fmt.Sprintf("%s/callers=%d", be.name, callers), func(b *testing.B) {
				ctx := context.Background()
				l, err := audit.Open(ctx, audit.Options{Store: be.open(b, be.file(b)), Keys: testKeys()})
				if err != nil {
					b.Fatal(err)
				}
				e := event(1)
				b.SetParallelism(max(callers/runtime.GOMAXPROCS(0), 1)) // concurrent bot requests
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := l.Intent(ctx, e); err != nil {
							b.Error(err)
							return
						}
					}
				})
				el := time.Since(start).Seconds()
				b.StopTimer()
				st := l.Stats()
				if err := l.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(st.Records)/el, "records/s")
				b.ReportMetric(float64(st.Batches)/el, "fsyncs/s")
				b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
				b.ReportMetric(float64(st.MaxBatch), "max-batch")
			})
		}
	}
}
