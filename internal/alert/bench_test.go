package alert_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
)

type discard struct{}

func (discard) Deliver(context.Context, *alert.Alert) error { return nil }

func benchRedactor() *logging.Redactor {
	red := logging.NewRedactor()
	for i := range 50 {
		red.Register(secret.FromString(fmt.Sprintf("bench-secret-value-%04d-abcdefghijklmnop", i)))
	}
	return red
}

// BenchmarkSend is what a detector pays per alert: scrubbing every field
// and a non-blocking enqueue (the queue is large enough not to drop).
// Compare with BenchmarkScrubFields, the scrubbing alone, in the same run.
func BenchmarkSend(b *testing.B) {
	red := benchRedactor()
	d, err := alert.New(alert.Options{Scrubber: red, Policy: alert.Policy{QueueSize: 1 << 16},
		Sinks: []alert.SinkConfig{{Name: "x", Sink: discard{}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = d.Close(context.Background()) }()
	a := sample("detect.order_size", "tok_bench", alert.SeverityHigh)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d.Send(a)
	}
}

// BenchmarkScrubFields is the baseline: the redactor over the same fields.
func BenchmarkScrubFields(b *testing.B) {
	red := benchRedactor()
	a := sample("detect.order_size", "tok_bench", alert.SeverityHigh)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = red.ScrubString(a.Detector)
		_ = red.ScrubString(a.Subject.Token)
		_ = red.ScrubString(a.Subject.Venue)
		_ = red.ScrubString(a.Summary)
		_ = red.ScrubString(a.Action)
		for _, f := range a.Evidence {
			_ = red.ScrubString(f.Key)
			_ = red.ScrubString(f.Value)
		}
	}
}
