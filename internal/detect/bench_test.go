package detect_test

import (
	"context"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
)

// The detector's cost on the request path is Record (queue the event) and
// Admit (check the holds). Run with
//
//	go test -run '^$' -bench . ./internal/detect/
func benchDetector(b *testing.B) *detect.Detector {
	s, err := detect.Compile(config.Default())
	if err != nil {
		b.Fatal(err)
	}
	d, err := detect.New(context.Background(), detect.Options{Settings: s, SourceKey: sourceKey})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

// BenchmarkRecord: concurrent Records of order events (the worker
// analyses them meanwhile; a full queue drops, as in production).
func BenchmarkRecord(b *testing.B) {
	d := benchDetector(b)
	e := order("tok_a", t0, 60)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Record(ctx, e)
		}
	})
	b.StopTimer()
	st := d.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(st.Received+st.Dropped), "dropped/op")
}

// BenchmarkAnalyse: the worker's time per event (Record then Sync).
func BenchmarkAnalyse(b *testing.B) {
	d := benchDetector(b)
	ctx := context.Background()
	evs := make([]audit.Event, 1000)
	for i := range evs {
		evs[i] = order("tok_a", t0.Add(time.Duration(i)*time.Second), jitter(60, i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.Record(ctx, evs[i%len(evs)])
		if i%1000 == 999 {
			_ = d.Sync(ctx)
		}
	}
	_ = d.Sync(ctx)
}

// BenchmarkAdmit: the gateway's hold check with no hold in force (the
// usual case) and with a throttle on another token.
func BenchmarkAdmit(b *testing.B) {
	b.Run("no holds", func(b *testing.B) {
		d := benchDetector(b)
		now := time.Now()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, _ := d.Admit("tok_a", "binance", now); r != "" {
					b.Error(r)
				}
			}
		})
	})
}
