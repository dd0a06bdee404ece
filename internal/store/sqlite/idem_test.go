package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/store/sqlite"
)

// The idempotency store's behaviour is the storetest.Idempotency contract
// (TestIdempotencyContract runs it on SQLite); what is SQLite's own is here.

func TestIdemSchemaVersion(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if v, err := db.SchemaVersion(context.Background()); err != nil || v < 5 {
		t.Fatalf("schema version %d, %v", v, err)
	}
}
