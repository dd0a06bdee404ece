package storetest

import (
	"context"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/venue/kraken"
)

// Nonces runs the kraken.NonceStore contract on stores from open, each
// on a fresh database.
func Nonces(t *testing.T, open func(t *testing.T) kraken.NonceStore) {
	ctx := context.Background()
	t.Run("reserve", func(t *testing.T) {
		s := open(t)
		tests := []struct {
			name          string
			key           string
			atLeast, size uint64
			lo, hi        uint64
		}{
			{"first reservation starts at atLeast", "a", 1000, 10, 1000, 1009},
			{"next starts after the mark", "a", 5, 10, 1010, 1019},
			{"atLeast above the mark wins", "a", 5000, 1, 5000, 5000},
			{"keys are independent", "b", 7, 3, 7, 9},
			{"atLeast 0 on a new key", "c", 0, 2, 0, 1},
			{"then after the mark", "a", 0, 1, 5001, 5001},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				lo, hi, err := s.Reserve(ctx, tt.key, tt.atLeast, tt.size)
				if err != nil || lo != tt.lo || hi != tt.hi {
					t.Fatalf("Reserve = [%d, %d], %v; want [%d, %d]", lo, hi, err, tt.lo, tt.hi)
				}
			})
		}
	})

	t.Run("out of range", func(t *testing.T) {
		s := open(t)
		if _, _, err := s.Reserve(ctx, "a", 1<<63, 1); err == nil {
			t.Fatal("atLeast 2^63 accepted")
		}
		if _, _, err := s.Reserve(ctx, "a", 1, 0); err == nil {
			t.Fatal("size 0 accepted")
		}
		// Up to the last signed 64-bit value, then no further.
		const top = 1<<63 - 1
		if lo, hi, err := s.Reserve(ctx, "a", top-2, 2); err != nil || lo != top-2 || hi != top-1 {
			t.Fatalf("Reserve near the top = [%d, %d], %v", lo, hi, err)
		}
		if lo, hi, err := s.Reserve(ctx, "a", 0, 2); err == nil {
			t.Fatalf("Reserve past the top = [%d, %d]", lo, hi)
		}
		// The refused call left the mark where it was.
		if lo, _, err := s.Reserve(ctx, "b", 0, 1); err != nil || lo != 0 {
			t.Fatalf("other key after a refusal: %d %v", lo, err)
		}
	})

	t.Run("concurrent reservations are disjoint", func(t *testing.T) {
		s := open(t)
		var mu sync.Mutex
		seen := map[uint64]bool{}
		var wg sync.WaitGroup
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lo, hi, err := s.Reserve(ctx, "k", 100, 5)
				if err != nil || hi != lo+4 || lo < 100 {
					t.Errorf("Reserve: [%d, %d] %v", lo, hi, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for n := lo; n <= hi; n++ {
					if seen[n] {
						t.Errorf("nonce %d reserved twice", n)
					}
					seen[n] = true
				}
			}()
		}
		wg.Wait()
		if len(seen) != 200 {
			t.Fatalf("%d distinct nonces, want 200", len(seen))
		}
		// Nothing was skipped: the 40 ranges tile [100, 299].
		if lo, _, err := s.Reserve(ctx, "k", 0, 1); err != nil || lo != 300 {
			t.Fatalf("next after 40 reservations: %d %v; want 300", lo, err)
		}
	})
}
