package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
)

// TestAuditImportsLegacyFile: a data dir from a version that kept the log
// in audit.db. Until the log is opened, readers read that file; opening
// it imports the file into keystile.db byte for byte, the chain goes on
// from its head, nothing is imported twice, and the whole log verifies.
func TestAuditImportsLegacyFile(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	db, v, err := app.OpenVault(ctx, app.Env{}, dir, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := app.AuditKeys(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	_ = v.Close(ctx)
	_ = db.Close()

	// The old layout: its own SQLite file, five intents, checkpoint every 2.
	legacy, err := audit.OpenSQLite(ctx, filepath.Join(dir, app.AuditDBFile))
	if err != nil {
		t.Fatal(err)
	}
	old, err := audit.Open(ctx, audit.Options{Store: legacy, Keys: keys, CheckpointEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if err := old.Intent(ctx, audit.Event{RequestID: "old-" + id, Venue: "binance"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	verify := func(want uint64) audit.Report {
		t.Helper()
		r, err := app.OpenAuditReader(ctx, cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rep, err := audit.Verify(ctx, r, keys.PublicKey())
		if err != nil || rep.Records != want {
			t.Fatalf("verify: %+v %v, want %d records", rep, err, want)
		}
		return rep
	}
	verify(5) // read from audit.db: keystile.db holds no log yet

	for round := range 2 {
		l, err := app.OpenAuditLog(ctx, cfg, dir, keys, os.Stdout, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Intent(ctx, audit.Event{RequestID: "new", Venue: "binance"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		rep := verify(uint64(6 + round))
		if rep.Unsigned != 0 || rep.LastCheckpointSeq != uint64(6+round) {
			t.Fatalf("round %d: %+v", round, rep)
		}
	}
	// The records are in keystile.db now: the old file can go.
	if err := os.Remove(filepath.Join(dir, app.AuditDBFile)); err != nil {
		t.Fatal(err)
	}
	verify(7)
}
