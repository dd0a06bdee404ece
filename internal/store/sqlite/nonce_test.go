package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/store/sqlite"
)

func TestNonceReserve(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Nonces()
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi, err := s.Reserve(ctx, tt.key, tt.atLeast, tt.size)
			if err != nil || lo != tt.lo || hi != tt.hi {
				t.Fatalf("Reserve = [%d, %d], %v; want [%d, %d]", lo, hi, err, tt.lo, tt.hi)
			}
		})
	}
	if _, _, err := s.Reserve(ctx, "a", 1<<63, 1); !errors.Is(err, sqlite.ErrNonceRange) {
		t.Fatalf("huge atLeast: %v", err)
	}
	if _, _, err := s.Reserve(ctx, "a", 1, 0); !errors.Is(err, sqlite.ErrNonceRange) {
		t.Fatalf("size 0: %v", err)
	}
	_ = db.Close()

	// The mark survives a reopen.
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if lo, _, err := db.Nonces().Reserve(ctx, "a", 0, 1); err != nil || lo != 5001 {
		t.Fatalf("after reopen lo = %d, %v; want 5001", lo, err)
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v < 3 {
		t.Fatalf("schema version %d, %v", v, err)
	}
}

func TestNonceReserveConcurrentDisjoint(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := db.Nonces()
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi, err := s.Reserve(ctx, "k", 100, 5)
			if err != nil || hi != lo+4 {
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
}
