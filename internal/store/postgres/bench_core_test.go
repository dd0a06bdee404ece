package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
)

// BenchmarkNonceReserveReplicas: three replicas reserving nonces of one
// API key at once (the contended case: every reservation takes the same
// row lock).
func BenchmarkNonceReserveReplicas(b *testing.B) {
	ctx := context.Background()
	dsn := testDSN(b)
	dbs := make([]*postgres.DB, 3)
	for i := range dbs {
		dbs[i] = openDSN(b, dsn)
	}
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		s := dbs[next.Add(1)%int64(len(dbs))].Nonces()
		for pb.Next() {
			if _, _, err := s.Reserve(ctx, "key:bench", 0, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkTokenCreate: one token record created, with its version bump.
func BenchmarkTokenCreate(b *testing.B) {
	ctx := context.Background()
	s := openTest(b).Tokens()
	for i := 0; b.Loop(); i++ {
		if err := s.Create(ctx, storetest.TokenRecord(fmt.Sprintf("tok_%d", i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVersion: one poll of a change version.
func BenchmarkVersion(b *testing.B) {
	ctx := context.Background()
	db := openTest(b)
	if err := db.Tokens().Create(ctx, storetest.TokenRecord("tok_a")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := db.Version(ctx, postgres.TopicTokens); err != nil {
			b.Fatal(err)
		}
	}
}
