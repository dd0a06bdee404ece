package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/token"
)

// benchEnv returns a service holding n tokens, one known token and one
// well-formed token that was never issued.
func benchEnv(b testing.TB, n int) (*token.Service, string, string) {
	e := newEnv(b)
	var known string
	for i := range n {
		raw, _ := e.create(b, token.CreateRequest{})
		if i == n/2 {
			known = raw
		}
	}
	other := newEnv(b)
	unknown, _ := other.create(b, token.CreateRequest{})
	return e.svc, known, unknown
}

func BenchmarkVerify(b *testing.B) {
	svc, known, _ := benchEnv(b, 100)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Verify(ctx, known, live); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyKnown(b *testing.B) {
	svc, known, _ := benchEnv(b, 100)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = svc.Verify(ctx, known, live)
	}
}

func BenchmarkVerifyUnknown(b *testing.B) {
	svc, _, unknown := benchEnv(b, 100)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = svc.Verify(ctx, unknown, live)
	}
}

// TestVerifyTimingKnownUnknown measures known and unknown tokens in
// interleaved rounds and fails only on a gross difference (3x on the
// fastest round of each), so it flags an early return, not noise.
func TestVerifyTimingKnownUnknown(t *testing.T) {
	if testing.Short() {
		t.Skip("timing measurement")
	}
	svc, known, unknown := benchEnv(t, 50)
	ctx := context.Background()
	const rounds, per = 30, 2000
	best := func(raw string, cur time.Duration) time.Duration {
		start := time.Now()
		for range per {
			_, _ = svc.Verify(ctx, raw, live)
		}
		if d := time.Since(start); cur == 0 || d < cur {
			return d
		}
		return cur
	}
	var k, u time.Duration
	for range rounds {
		k = best(known, k)
		u = best(unknown, u)
	}
	t.Logf("fastest round of %d: known %v/op, unknown %v/op", per, k/per, u/per)
	if k > 3*u || u > 3*k {
		t.Fatalf("known %v vs unknown %v per %d verifications: more than 3x apart", k, u, per)
	}
}
