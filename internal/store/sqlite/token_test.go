package sqlite_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

func openTokens(t *testing.T) (*sqlite.DB, *sqlite.TokenStore) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, db.Tokens()
}

func rec(id string) token.Record {
	at := time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.UTC)
	return token.Record{
		Token: token.Token{
			ID: token.ID(id), Name: "bot " + id, Policy: "default", Venues: []string{"binance", "kraken"},
			Scopes: []string{"order.*", "wallet.withdraw"}, Test: true,
			CIDRs:     []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
			CreatedAt: at, ExpiresAt: at.Add(24 * time.Hour),
		},
		Digest: sha256.Sum256([]byte(id)),
	}
}

func TestTokenStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	_, s := openTokens(t)
	a, b := rec("tok_a"), rec("tok_b")
	b.Test, b.CIDRs, b.Policy = false, nil, ""
	b.CreatedAt = b.CreatedAt.Add(time.Second)
	b.RevokedAt, b.FrozenAt, b.GraceUntil = b.CreatedAt.Add(time.Minute), b.CreatedAt.Add(2*time.Minute), b.CreatedAt.Add(3*time.Minute)
	b.RotatedFrom, b.RotatedTo = "tok_x", "tok_y"
	for _, r := range []token.Record{a, b} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], a) || !reflect.DeepEqual(got[1], b) {
		t.Fatalf("All =\n%+v\nwant\n%+v\n%+v", got, a, b)
	}
}

func TestTokenStoreErrors(t *testing.T) {
	ctx := context.Background()
	_, s := openTokens(t)
	if err := s.Create(ctx, rec("tok_a")); err != nil {
		t.Fatal(err)
	}
	dupDigest := rec("tok_b")
	dupDigest.Digest = rec("tok_a").Digest
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"duplicate id", func() error { return s.Create(ctx, rec("tok_a")) }, store.ErrExists},
		{"duplicate digest", func() error { return s.Create(ctx, dupDigest) }, store.ErrExists},
		{"update missing", func() error { return s.Update(ctx, rec("tok_zz")) }, store.ErrNotFound},
		{"create with missing update", func() error { return s.Create(ctx, rec("tok_c"), rec("tok_zz")) }, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	all, err := s.All(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("failed writes left %d records (%v)", len(all), err)
	}
}

func TestTokenStoreUpdateAndTouch(t *testing.T) {
	ctx := context.Background()
	_, s := openTokens(t)
	a := rec("tok_a")
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	t1 := a.CreatedAt.Add(time.Hour)
	if err := s.TouchUsed(ctx, map[token.ID]time.Time{"tok_a": t1, "tok_unknown": t1}); err != nil {
		t.Fatal(err)
	}
	// An older touch and an update carrying a stale LastUsedAt never lower it.
	if err := s.TouchUsed(ctx, map[token.ID]time.Time{"tok_a": a.CreatedAt}); err != nil {
		t.Fatal(err)
	}
	a.FrozenAt = t1
	if err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	succ := rec("tok_b")
	a.RotatedTo, a.GraceUntil = "tok_b", t1.Add(time.Minute)
	if err := s.Create(ctx, succ, a); err != nil {
		t.Fatal(err)
	}
	all, err := s.All(ctx)
	if err != nil || len(all) != 2 {
		t.Fatal(err, len(all))
	}
	got := all[0]
	if !got.LastUsedAt.Equal(t1) || !got.FrozenAt.Equal(t1) || got.RotatedTo != "tok_b" || !got.GraceUntil.Equal(a.GraceUntil) {
		t.Fatalf("after update/touch: %+v", got)
	}
}
