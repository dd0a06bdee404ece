package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/token"
)

// TokenRecord is a full token record with id (its digest is the SHA-256
// of the id), times with nanoseconds.
func TokenRecord(id string) token.Record {
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

// Tokens runs the token.Store contract on stores from open, each on a
// fresh database.
func Tokens(t *testing.T, open func(t *testing.T) token.Store) {
	ctx := context.Background()
	t.Run("round trip", func(t *testing.T) {
		s := open(t)
		if all, err := s.All(ctx); err != nil || len(all) != 0 {
			t.Fatalf("empty store: %+v %v", all, err)
		}
		a, b := TokenRecord("tok_a"), TokenRecord("tok_b")
		b.Test, b.CIDRs, b.Policy = false, nil, ""
		b.CreatedAt = b.CreatedAt.Add(time.Second)
		b.RevokedAt, b.FrozenAt, b.GraceUntil = b.CreatedAt.Add(time.Minute), b.CreatedAt.Add(2*time.Minute), b.CreatedAt.Add(3*time.Minute)
		b.RotatedFrom, b.RotatedTo = "tok_x", "tok_y"
		for _, r := range []token.Record{b, a} {
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !reflect.DeepEqual(got[0], a) || !reflect.DeepEqual(got[1], b) {
			t.Fatalf("All =\n%+v\nwant (oldest first)\n%+v\n%+v", got, a, b)
		}
	})

	t.Run("errors", func(t *testing.T) {
		s := open(t)
		if err := s.Create(ctx, TokenRecord("tok_a")); err != nil {
			t.Fatal(err)
		}
		dupDigest := TokenRecord("tok_b")
		dupDigest.Digest = TokenRecord("tok_a").Digest
		tests := []struct {
			name string
			run  func() error
			want error
		}{
			{"duplicate id", func() error { return s.Create(ctx, TokenRecord("tok_a")) }, store.ErrExists},
			{"duplicate digest", func() error { return s.Create(ctx, dupDigest) }, store.ErrExists},
			{"update missing", func() error { return s.Update(ctx, TokenRecord("tok_zz")) }, store.ErrNotFound},
			{"create with missing update", func() error { return s.Create(ctx, TokenRecord("tok_c"), TokenRecord("tok_zz")) }, store.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.run(); !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			})
		}
		all, err := s.All(ctx)
		if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], TokenRecord("tok_a")) {
			t.Fatalf("failed writes changed the records: %+v (%v)", all, err)
		}
	})

	t.Run("create rolls back whole", func(t *testing.T) {
		s := open(t)
		a := TokenRecord("tok_a")
		if err := s.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
		// The update of tok_a is valid but the second one is not: neither
		// the new record nor the valid update is written.
		changed := a
		changed.RevokedAt = a.CreatedAt.Add(time.Hour)
		if err := s.Create(ctx, TokenRecord("tok_b"), changed, TokenRecord("tok_zz")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Create: %v", err)
		}
		all, err := s.All(ctx)
		if err != nil || len(all) != 1 || !all[0].RevokedAt.IsZero() {
			t.Fatalf("a failed Create wrote: %+v %v", all, err)
		}
	})

	t.Run("update and touch", func(t *testing.T) {
		s := open(t)
		a := TokenRecord("tok_a")
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
		succ := TokenRecord("tok_b")
		a.RotatedTo, a.GraceUntil = "tok_b", t1.Add(time.Minute)
		if err := s.Create(ctx, succ, a); err != nil {
			t.Fatal(err)
		}
		all, err := s.All(ctx)
		if err != nil || len(all) != 2 {
			t.Fatal(err, len(all))
		}
		got := all[0]
		if got.ID != "tok_a" || !got.LastUsedAt.Equal(t1) || !got.FrozenAt.Equal(t1) || got.RotatedTo != "tok_b" || !got.GraceUntil.Equal(a.GraceUntil) {
			t.Fatalf("after update/touch: %+v", got)
		}
		if got.Digest != TokenRecord("tok_a").Digest {
			t.Fatal("Update changed the digest")
		}
	})
}
