package token_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/token"
)

// A TTL above the maximum is refused, naming the maximum, rather than
// silently shortened; the maximum itself is accepted.
func TestCreateRefusesTTLAboveMax(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "ttl.db"))
	svc, err := token.New(ctx, token.Options{Store: db.Tokens(), DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := svc.Create(ctx, token.CreateRequest{Name: "x", Venues: []string{"v"}, TTL: 5 * time.Hour})
	if !errors.Is(err, token.ErrInvalid) || tok != nil {
		t.Fatalf("Create(ttl 5h > max 2h) = %v, %v; want ErrInvalid", tok, err)
	}
	if !strings.Contains(err.Error(), "maximum 2h0m0s") || !strings.Contains(err.Error(), "tokens.max_ttl") {
		t.Fatalf("error %q does not name the maximum", err)
	}
	if l, _ := svc.List(ctx); len(l) != 0 {
		t.Fatalf("%d tokens after a refused create", len(l))
	}
	if _, tok, err = svc.Create(ctx, token.CreateRequest{Name: "x", Venues: []string{"v"}, TTL: 2 * time.Hour}); err != nil || tok.ExpiresAt.Sub(tok.CreatedAt) != 2*time.Hour {
		t.Fatalf("Create(ttl = max) = %v, %v", tok, err)
	}
}
