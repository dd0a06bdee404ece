package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/store/postgres"
)

// TestNoncesAcrossReplicas: replicas sharing an API key reserve nonces at
// once; every nonce is handed out once, each replica's reservations
// increase, and together they tile the range with no gap.
func TestNoncesAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 3)
	const (
		workers = 4  // per replica
		rounds  = 25 // reservations per worker
		size    = 3
	)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for _, db := range dbs {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := db.Nonces()
				var last uint64
				for i := range rounds {
					lo, hi, err := s.Reserve(ctx, "key:shared", 1_000_000, size)
					if err != nil || hi != lo+size-1 || lo < 1_000_000 {
						t.Errorf("Reserve = [%d, %d], %v", lo, hi, err)
						return
					}
					if i > 0 && lo <= last {
						t.Errorf("reservation [%d, %d] after one ending at %d", lo, hi, last)
					}
					last = hi
					mu.Lock()
					for n := lo; n <= hi; n++ {
						if seen[n] {
							t.Errorf("nonce %d handed out twice", n)
						}
						seen[n] = true
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	total := uint64(len(dbs) * workers * rounds * size)
	if uint64(len(seen)) != total {
		t.Fatalf("%d distinct nonces, want %d", len(seen), total)
	}
	// A reservation after all of them, from any replica, starts right
	// after the last one.
	for i, db := range dbs {
		lo, _, err := db.Nonces().Reserve(ctx, "key:shared", 0, 1)
		if want := 1_000_000 + total + uint64(i); err != nil || lo != want {
			t.Fatalf("replica %d next = %d, %v; want %d", i, lo, err, want)
		}
	}
}

// TestNonceTopOfRange: a range may end exactly at 2^63-1; nothing is
// reserved past it, and the refusal is ErrNonceRange.
func TestNonceTopOfRange(t *testing.T) {
	ctx := context.Background()
	s := openTest(t).Nonces()
	const top = 1<<63 - 1
	if lo, hi, err := s.Reserve(ctx, "k", top-3, 2); err != nil || lo != top-3 || hi != top-2 {
		t.Fatalf("Reserve = [%d, %d], %v", lo, hi, err)
	}
	if lo, hi, err := s.Reserve(ctx, "k", 0, 2); err != nil || lo != top-1 || hi != top {
		t.Fatalf("Reserve to the top = [%d, %d], %v", lo, hi, err)
	}
	if _, _, err := s.Reserve(ctx, "k", 0, 1); !errors.Is(err, postgres.ErrNonceRange) {
		t.Fatalf("Reserve past the top: %v, want ErrNonceRange", err)
	}
	if _, _, err := s.Reserve(ctx, "k", 1<<63, 1); !errors.Is(err, postgres.ErrNonceRange) {
		t.Fatalf("atLeast 2^63: %v", err)
	}
	if _, _, err := s.Reserve(ctx, "k", 1, 0); !errors.Is(err, postgres.ErrNonceRange) {
		t.Fatalf("size 0: %v", err)
	}
}
