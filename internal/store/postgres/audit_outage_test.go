package postgres_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/store/postgres"
)

// TestAuditOutcomesSurviveOutage: outcome records queued while the
// database cannot be reached are kept and written when it answers again:
// none is dropped, and the chain holds every record and verifies.
func TestAuditOutcomesSurviveOutage(t *testing.T) {
	ctx := context.Background()
	dsn := testDSN(t)
	direct := openDSN(t, dsn)
	proxy, db := openThroughProxy(t, dsn)
	keys := audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), Identity: bytes.Repeat([]byte{9}, 32)}
	l, err := db.OpenAuditLog(ctx, postgres.AuditOptions{Keys: keys, CheckpointEvery: 8})
	if err != nil {
		t.Fatal(err)
	}
	record := func(prefix string, n int) {
		for i := range n {
			l.Record(ctx, audit.Event{RequestID: fmt.Sprintf("%s-%d", prefix, i), TokenID: "tok_1", Venue: "binance",
				Method: "POST", Path: "/api/v3/order", Operation: "order.place", Decision: audit.Allow, Status: 200, Upstream: 200})
		}
	}
	waitFor := func(what string, d time.Duration, ok func(audit.Stats) bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !ok(l.Stats()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v: stats %+v", what, d, l.Stats())
			}
		}
	}
	record("before", 5)
	waitFor("the first records", 10*time.Second, func(s audit.Stats) bool { return s.Records == 5 })

	proxy.down.Store(true)
	proxy.cut()
	downAt := time.Now()
	record("down", 20)
	waitFor("a failed write", 15*time.Second, func(s audit.Stats) bool { return s.Failures > 0 })
	time.Sleep(time.Second) // several retries while down
	if st := l.Stats(); st.Dropped != 0 || st.Records != 5 {
		t.Fatalf("while down: %+v, want nothing dropped and nothing more written", st)
	}
	record("down-late", 5)

	proxy.down.Store(false)
	upAt := time.Now()
	waitFor("the kept records", 15*time.Second, func(s audit.Stats) bool { return s.Records == 30 })
	t.Logf("down %v; the 25 records kept meanwhile written %v after the database came back", upAt.Sub(downAt).Round(time.Millisecond), time.Since(upAt).Round(time.Millisecond))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Dropped != 0 || l.Healthy() != nil {
		t.Fatalf("after the outage: %+v, healthy %v", st, l.Healthy())
	}
	rep, err := audit.Verify(ctx, direct.AuditReader(), keys.PublicKey())
	if err != nil || rep.Records != 30 {
		t.Fatalf("verify: %+v %v, want 30 records", rep, err)
	}
	seen := map[string]bool{}
	if err := direct.AuditReader().Scan(ctx, 1, func(r audit.Record) error {
		seen[r.RequestID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"before-0", "down-0", "down-19", "down-late-4"} {
		if !seen[id] {
			t.Errorf("record %s missing", id)
		}
	}
}
