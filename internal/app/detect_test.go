package app

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

// TestTokenResponder: the interim kill switch freezes every live token
// once (idempotent), leaves revoked ones alone, and FreezeToken of an
// unknown token fails (recorded by the detector as a failed action).
func TestTokenResponder(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	var ids []token.ID
	for _, name := range []string{"a", "b", "c"} {
		_, tk, err := tokens.Create(ctx, token.CreateRequest{Name: name, Venues: []string{"binance"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	if err := tokens.Revoke(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	r := tokenResponder{tokens: tokens, log: slog.New(slog.DiscardHandler)}
	if err := r.FreezeToken(ctx, "tok_nosuchtoken", "test"); err == nil {
		t.Fatal("freezing an unknown token succeeded")
	}
	for range 2 {
		if err := r.Kill(ctx, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		tk, err := tokens.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		frozen := !tk.FrozenAt.IsZero()
		if want := i < 2; frozen != want {
			t.Errorf("token %d frozen=%v, want %v", i, frozen, want)
		}
	}
}
