package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestNonceReserve: what the contract (storetest.Nonces, TestContractNonces)
// leaves to each store: SQLite's range error, and the mark surviving a
// reopen of the file.
func TestNonceReserve(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Nonces()
	if lo, hi, err := s.Reserve(ctx, "a", 5000, 1); err != nil || lo != 5000 || hi != 5000 {
		t.Fatalf("Reserve = [%d, %d], %v", lo, hi, err)
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
