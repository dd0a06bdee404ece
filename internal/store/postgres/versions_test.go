package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// replicaPools opens n pools on one fresh schema: n gateway replicas
// sharing a database.
func replicaPools(t *testing.T, n int) []*postgres.DB {
	t.Helper()
	dsn := testDSN(t)
	dbs := make([]*postgres.DB, n)
	for i := range dbs {
		dbs[i] = openDSN(t, dsn)
	}
	return dbs
}

func mustVersion(t *testing.T, db *postgres.DB, topic string) int64 {
	t.Helper()
	v, err := db.Version(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVersionBumps: each committed write of a topic raises its version
// by one; failed writes and last-use bookkeeping leave it alone; topics
// are independent.
func TestVersionBumps(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	for _, topic := range []string{postgres.TopicTokens, postgres.TopicVault, postgres.TopicKillSwitch, "never"} {
		if v := mustVersion(t, db, topic); v != 0 {
			t.Fatalf("%s before any write: %d", topic, v)
		}
	}
	toks := db.Tokens()
	a := storetest.TokenRecord("tok_a")
	steps := []struct {
		name  string
		run   func() error
		fails bool
		want  int64
	}{
		{"create", func() error { return toks.Create(ctx, a) }, false, 1},
		{"duplicate create", func() error { return toks.Create(ctx, a) }, true, 1},
		{"update", func() error { a.RevokedAt = a.CreatedAt.Add(time.Hour); return toks.Update(ctx, a) }, false, 2},
		{"update missing", func() error { return toks.Update(ctx, storetest.TokenRecord("tok_zz")) }, true, 2},
		{"create with a missing update", func() error {
			return toks.Create(ctx, storetest.TokenRecord("tok_b"), storetest.TokenRecord("tok_zz"))
		}, true, 2},
		{"touch", func() error {
			return toks.TouchUsed(ctx, map[token.ID]time.Time{"tok_a": a.CreatedAt.Add(2 * time.Hour)})
		}, false, 2},
		{"rotate", func() error {
			a.RotatedTo = "tok_b"
			return toks.Create(ctx, storetest.TokenRecord("tok_b"), a)
		}, false, 3},
	}
	for _, s := range steps {
		err := s.run()
		if (err != nil) != s.fails {
			t.Fatalf("%s: %v", s.name, err)
		}
		if v := mustVersion(t, db, postgres.TopicTokens); v != s.want {
			t.Fatalf("after %s: tokens version %d, want %d", s.name, v, s.want)
		}
	}

	vs := db.Vault()
	kek := vault.KEKRecord{Version: 1, Wrapped: []byte("k"), CreatedAt: time.Unix(1e9, 0)}
	if err := vs.Init(ctx, nil, kek, nil); err != nil {
		t.Fatal(err)
	}
	if err := vs.Init(ctx, nil, kek, nil); !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	c := vault.CredentialRecord{Name: "c", CurrentVersion: 1, State: "active", CreatedAt: kek.CreatedAt, RotatedAt: kek.CreatedAt, MAC: []byte("m")}
	if err := vs.PutVersion(ctx, c, vault.VersionRecord{Name: "c", Version: 1, KEKVersion: 1, WrappedDEK: []byte("d"), CreatedAt: kek.CreatedAt}, 0); err != nil {
		t.Fatal(err)
	}
	if err := vs.TouchUsed(ctx, map[string]time.Time{"c": kek.CreatedAt}); err != nil {
		t.Fatal(err)
	}
	if err := vs.Delete(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if err := vs.Revoke(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	if v := mustVersion(t, db, postgres.TopicVault); v != 3 {
		t.Fatalf("vault version %d after init, put, revoke; want 3", v)
	}
	if v := mustVersion(t, db, postgres.TopicTokens); v != 3 {
		t.Fatalf("vault writes moved the tokens version to %d", v)
	}
}

// TestTokenRevocationSeenByOtherReplica: a token revoked through one
// pool is seen by another pool's All, announced by a version change.
func TestTokenRevocationSeenByOtherReplica(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 2)
	a, b := dbs[0], dbs[1]
	tok := storetest.TokenRecord("tok_a")
	if err := a.Tokens().Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	before := mustVersion(t, b, postgres.TopicTokens)
	all, err := b.Tokens().All(ctx)
	if err != nil || len(all) != 1 || !all[0].RevokedAt.IsZero() {
		t.Fatalf("replica B before: %+v %v", all, err)
	}
	tok.RevokedAt = tok.CreatedAt.Add(time.Minute)
	if err := a.Tokens().Update(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if after := mustVersion(t, b, postgres.TopicTokens); after <= before {
		t.Fatalf("replica B's tokens version %d after a revocation on A, was %d", after, before)
	}
	all, err = b.Tokens().All(ctx)
	if err != nil || len(all) != 1 || !all[0].RevokedAt.Equal(tok.RevokedAt) {
		t.Fatalf("replica B after the revocation on A: %+v %v", all, err)
	}
}

// TestVersionConcurrentWriters: writes from several replicas at once
// each count once: the version ends at exactly the number of writes.
func TestVersionConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 3)
	const perReplica = 15
	var wg sync.WaitGroup
	for i, db := range dbs {
		for j := range perReplica {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := db.Tokens().Create(ctx, storetest.TokenRecord(fmt.Sprintf("tok_%d_%d", i, j))); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	want := int64(len(dbs) * perReplica)
	for i, db := range dbs {
		if v := mustVersion(t, db, postgres.TopicTokens); v != want {
			t.Fatalf("replica %d sees tokens version %d, want %d", i, v, want)
		}
	}
}

// TestDetectHoldsBumpVersion: a hold put or released moves the
// detect_holds version (replicas reload their holds on it); releasing an
// absent hold does not.
func TestDetectHoldsBumpVersion(t *testing.T) {
	ctx := context.Background()
	pools := replicaPools(t, 2)
	a, b := pools[0].Detect(), pools[1]
	h := detect.Hold{Kind: detect.HoldFreezeVenue, Subject: "binance", Since: time.Unix(1_700_000_000, 0), Detector: "order_size", Finding: "f"}
	if err := a.PutHold(ctx, h); err != nil {
		t.Fatal(err)
	}
	if v := mustVersion(t, b, postgres.TopicDetectHolds); v != 1 {
		t.Fatalf("after a put: %d", v)
	}
	if got, err := b.Detect().Holds(ctx); err != nil || len(got) != 1 || got[0].Subject != "binance" {
		t.Fatalf("other replica's holds: %+v, %v", got, err)
	}
	if err := a.DeleteHold(ctx, h.Kind, h.Subject); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteHold(ctx, h.Kind, h.Subject); err != nil {
		t.Fatalf("releasing an absent hold: %v", err)
	}
	if v := mustVersion(t, b, postgres.TopicDetectHolds); v != 2 {
		t.Fatalf("after a release and a no-op release: %d, want 2", v)
	}
}
