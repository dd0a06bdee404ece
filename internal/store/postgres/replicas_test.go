package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// TestTokenServiceRevocationAcrossReplicas: two token services, one per
// replica, on one database. A token revoked on replica A is refused by
// replica B once B, seeing the "tokens" version move, reloads: the
// polling fallback that works with no notification channel at all.
func TestTokenServiceRevocationAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 2)
	svc := make([]*token.Service, 2)
	for i, db := range dbs {
		s, err := token.New(ctx, token.Options{Store: db.Tokens()})
		if err != nil {
			t.Fatal(err)
		}
		svc[i] = s
	}
	seen := mustVersion(t, dbs[1], postgres.TopicTokens)
	// poll is replica B's fallback loop, one round: reload if the
	// version moved.
	poll := func() bool {
		v := mustVersion(t, dbs[1], postgres.TopicTokens)
		if v == seen {
			return false
		}
		seen = v
		if err := svc[1].Reload(ctx); err != nil {
			t.Fatal(err)
		}
		return true
	}
	raw, tok, err := svc[0].Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"binance"}})
	if err != nil {
		t.Fatal(err)
	}
	req := token.VerifyRequest{Venue: "binance"}
	if _, err := svc[1].Verify(ctx, string(raw.Reveal()), req); err == nil {
		t.Fatal("replica B knew the token before reloading (the test would prove nothing)")
	}
	if !poll() {
		t.Fatal("replica B saw no version change after a create on A")
	}
	if _, err := svc[1].Verify(ctx, string(raw.Reveal()), req); err != nil {
		t.Fatalf("replica B after reload: %v", err)
	}
	if poll() {
		t.Fatal("the version moved with no write")
	}
	if err := svc[0].Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if !poll() {
		t.Fatal("replica B saw no version change after a revocation on A")
	}
	if _, err := svc[1].Verify(ctx, string(raw.Reveal()), req); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("replica B verifies a token revoked on A: %v", err)
	}
}

// TestVaultAcrossReplicas: replicas initialising the vault at once make
// one keyring; a credential set through one replica's vault opens in the
// other's; the database holds only sealed bytes (a canary value is in no
// row).
func TestVaultAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 3)
	root := make([]byte, vault.KeySize)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = vault.Initialize(ctx, db.Vault(), secret.New(bytes.Clone(root)), map[string][]byte{"master_key": []byte(`{"source":"file"}`)}, time.Now())
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("replica %d: Initialize: %v", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d replicas initialised the vault, want 1", ok)
	}
	vs := make([]*vault.Vault, 2)
	for i := range vs {
		v, err := vault.Open(ctx, vault.Options{Store: dbs[i].Vault(), RootKey: secret.New(bytes.Clone(root)), CacheTTL: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = v.Close(ctx) })
		vs[i] = v
	}
	const canary = "CANARY-pgvault-5d1f0a77"
	before := mustVersion(t, dbs[1], postgres.TopicVault)
	if _, err := vs[0].Set(ctx, "binance", map[string]secret.Value{"api_key": secret.FromString("k"), "secret": secret.FromString(canary)}, vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := mustVersion(t, dbs[1], postgres.TopicVault); v <= before {
		t.Fatalf("vault version %d after a set, was %d", v, before)
	}
	var got string
	err := vs[1].WithCredential(ctx, "binance", func(c *vault.Credential) error {
		f, err := c.Field("secret")
		got = string(f.Reveal())
		return err
	})
	if err != nil || got != canary {
		t.Fatalf("replica B opened %q, %v", got, err)
	}
	// Two replicas rekeying at once: one wins, the other's whole Rekey
	// fails (store.ErrConflict when both started from the same keyring;
	// an integrity error when the loser read the data keys after the
	// winner committed, as they name a KEK its keyring does not hold); a
	// replica opened afterwards reads the credential under the winner's
	// keyring.
	rerrs := make([]error, len(vs))
	for i, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, rerrs[i] = v.Rekey(ctx)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range rerrs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict) && !errors.As(err, new(*vault.IntegrityError)):
			t.Fatalf("replica %d: Rekey: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent rekeys succeeded, want 1 (%v)", won, rerrs)
	}
	keks, _, err := dbs[2].Vault().Keyring(ctx)
	if err != nil || len(keks) != 2 || keks[0].Active || !keks[1].Active {
		t.Fatalf("keyring after the rekeys: %+v %v", keks, err)
	}
	fresh, err := vault.Open(ctx, vault.Options{Store: dbs[2].Vault(), RootKey: secret.New(bytes.Clone(root)), CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fresh.Close(ctx) }()
	err = fresh.WithCredential(ctx, "binance", func(c *vault.Credential) error {
		f, err := c.Field("secret")
		got = string(f.Reveal())
		return err
	})
	if err != nil || got != canary {
		t.Fatalf("a replica opened after the rekeys read %q, %v", got, err)
	}
	// No column of any vault table holds the value in clear; the check
	// finds it once a row does (so it can fail).
	if n := clearCopies(t, dbs[2], "vault_", canary); n != 0 {
		t.Fatalf("%d vault columns hold the secret in clear", n)
	}
	if _, err := dbs[2].Pool().Exec(ctx, `INSERT INTO vault_meta(key, value) VALUES ('control', $1)`, []byte("x"+canary+"y")); err != nil {
		t.Fatal(err)
	}
	if n := clearCopies(t, dbs[2], "vault_", canary); n != 1 {
		t.Fatalf("the clear-copy check found %d copies of a planted value, want 1", n)
	}
}

// clearCopies counts the rows, over every column of the tables whose
// name starts with prefix, that contain value in clear.
func clearCopies(t *testing.T, db *postgres.DB, prefix, value string) int {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Pool().Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND starts_with(table_name, $1)`, prefix)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ table, name, typ string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.name, &c.typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil || len(cols) == 0 {
		t.Fatalf("columns: %v (%d)", err, len(cols))
	}
	total := 0
	for _, c := range cols {
		expr := pgx.Identifier{c.name}.Sanitize() + `::text`
		arg := any(value)
		if c.typ == "bytea" {
			expr, arg = pgx.Identifier{c.name}.Sanitize(), []byte(value)
		}
		var n int
		q := `SELECT count(*) FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE position($1 in ` + expr + `) > 0`
		if err := db.Pool().QueryRow(ctx, q, arg).Scan(&n); err != nil {
			t.Fatalf("%s.%s: %v", c.table, c.name, err)
		}
		total += n
	}
	return total
}
