package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/keystile/keystile/internal/secret"
)

// BenchmarkHandler compares a plain slog text handler with the redacting
// one on a typical 6-attribute record, with 20 registered values.
func BenchmarkHandler(b *testing.B) {
	r := NewRedactor()
	for i := range 20 {
		r.Register(secret.FromString(fmt.Sprintf("registered-secret-%02d-abcdefghijklmnop", i)))
	}
	record := func(l *slog.Logger) {
		l.LogAttrs(context.Background(), slog.LevelInfo, "request forwarded to venue",
			slog.String("venue", "dmarket"),
			slog.String("method", "POST"),
			slog.String("path", "/exchange/v1/offers/create"),
			slog.Int("status", 200),
			slog.Duration("elapsed", 1234567),
			slog.String("request_id", "01HZX3K8F9T2Q6W7E5R4Y3U2I1"),
		)
	}
	b.Run("plain", func(b *testing.B) {
		l := slog.New(slog.NewTextHandler(io.Discard, nil))
		b.ReportAllocs()
		for b.Loop() {
			record(l)
		}
	})
	b.Run("redacting", func(b *testing.B) {
		l := New(io.Discard, Options{Redactor: r})
		b.ReportAllocs()
		for b.Loop() {
			record(l)
		}
	})
	b.Run("redacting-with", func(b *testing.B) {
		l := New(io.Discard, Options{Redactor: r}).With("component", "gateway")
		b.ReportAllocs()
		for b.Loop() {
			record(l)
		}
	})
}
