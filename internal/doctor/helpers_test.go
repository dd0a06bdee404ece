package doctor_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

// mintForTest mints a real token with the token service on a throwaway
// store, so that its checksum is genuine.
func mintForTest(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := svc.Create(ctx, token.CreateRequest{Name: "t", Venues: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	return string(v.Reveal())
}
