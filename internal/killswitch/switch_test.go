package killswitch_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestEngageClearRestart: a panic covers everything, survives a restart
// (a new Switch on the same database), and only a clear lifts it; every
// lever is an action record with who and why.
func TestEngageClearRestart(t *testing.T) {
	ctx := context.Background()
	db, path := openDB(t)
	al := newAuditLog(t)
	s := newSwitch(t, db.Trips(), al)
	if s.Engaged() || s.Covers("tok_a", "binance") {
		t.Fatal("engaged before any trip")
	}
	res := panicAll(t, s)
	if !res.New || !res.Persisted || res.Trip.ID == 0 || !s.Covers("tok_a", "binance") || !s.Covers("tok_b", "kraken") {
		t.Fatalf("after panic: %+v", res)
	}
	// Engaging it again changes nothing.
	again := panicAll(t, s)
	if again.New || again.Trip.ID != res.Trip.ID {
		t.Fatalf("second panic: %+v", again)
	}

	// Restart: a fresh switch on a fresh handle of the same file.
	db2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	s2 := newSwitch(t, db2.Trips(), al)
	if !s2.Covers("tok_a", "okx") || len(s2.Active()) != 1 || s2.Active()[0].Reason != "test panic" {
		t.Fatalf("after restart: %+v", s2.Active())
	}

	if _, err := s2.Clear(ctx, killswitch.Clearing{Actor: killswitch.AdminActor(1000)}); !errors.Is(err, killswitch.ErrInvalid) {
		t.Fatalf("clear without a reason: %v", err)
	}
	cleared, err := s2.Clear(ctx, killswitch.Clearing{Actor: killswitch.AdminActor(1000), Reason: "incident closed"})
	if err != nil || len(cleared) != 1 || cleared[0].ID != res.Trip.ID {
		t.Fatalf("Clear = %+v %v", cleared, err)
	}
	if s2.Engaged() {
		t.Fatal("still engaged after clear")
	}
	engage := al.actions(t, killswitch.OpEngage)
	clear := al.actions(t, killswitch.OpClear)
	if len(engage) != 1 || engage[0].Actor != "admin uid=1000" || engage[0].Reason != "test panic" || engage[0].Rule != killswitch.RulePanic ||
		!strings.Contains(engage[0].Detail, `"scope":"all"`) {
		t.Fatalf("engage records: %+v", engage)
	}
	if len(clear) != 1 || clear[0].Reason != "incident closed" || !strings.Contains(clear[0].Detail, `"engaged_rule":"killswitch.panic"`) {
		t.Fatalf("clear records: %+v", clear)
	}
	if obs := al.actions(t, killswitch.OpObserved); len(obs) != 1 {
		t.Fatalf("the restarted switch should record the trip it found: %+v", obs)
	}
}

// TestReplicas: two switches on one database (two replicas): a trip
// engaged or cleared on one takes effect on the other at its next
// refresh.
func TestReplicas(t *testing.T) {
	ctx := context.Background()
	db, path := openDB(t)
	db2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	a := newSwitch(t, db.Trips(), nil)
	b := newSwitch(t, db2.Trips(), nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go b.Run(rctx)

	if _, err := a.Engage(ctx, killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "binance", Rule: killswitch.RulePanic,
		Actor: "admin uid=1", Reason: "venue compromised"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica b to see the venue trip", func() bool { return b.Covers("tok_x", "binance") })
	if b.Covers("tok_x", "kraken") {
		t.Fatal("a venue trip covers another venue")
	}
	if _, err := a.Clear(ctx, killswitch.Clearing{Filter: killswitch.Filter{Scope: killswitch.ScopeVenue, Target: "binance"},
		Actor: "admin uid=1", Reason: "rotated"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica b to see the clear", func() bool { return !b.Covers("tok_x", "binance") })
}

// TestStoreDown: with the store failing, a panic still takes effect here
// (fail safe), is reported unpersisted, and is written at the next
// refresh; a clear with the store failing changes nothing.
func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	f := &flaky{Store: db.Trips()}
	s := newSwitch(t, f, nil)
	f.down.Store(true)
	res := panicAll(t, s)
	if res.Persisted || !s.Covers("tok_a", "binance") {
		t.Fatalf("panic with the store down: %+v", res)
	}
	if err := s.Refresh(ctx); err == nil {
		t.Fatal("refresh with the store down: no error")
	}
	if !s.Covers("tok_a", "binance") {
		t.Fatal("a failed refresh lifted the switch")
	}
	if _, err := s.Clear(ctx, killswitch.Clearing{Actor: "admin uid=1", Reason: "x"}); err == nil || !s.Engaged() {
		t.Fatalf("clear with the store down: %v, engaged %v", err, s.Engaged())
	}
	f.down.Store(false)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a, _ := db.Trips().Active(ctx); len(a) != 1 || a[0].Reason != "test panic" {
		t.Fatalf("not persisted after the store came back: %+v", a)
	}
	if act := s.Active(); len(act) != 1 || act[0].ID == 0 {
		t.Fatalf("active: %+v", act)
	}
}

func TestEngageInvalid(t *testing.T) {
	db, _ := openDB(t)
	s := newSwitch(t, db.Trips(), nil)
	for _, e := range []killswitch.Engagement{
		{Scope: "everything", Rule: "r", Actor: "a"},
		{Scope: killswitch.ScopeAll, Target: "x", Rule: "r", Actor: "a"},
		{Scope: killswitch.ScopeVenue, Rule: "r", Actor: "a"},
		{Scope: killswitch.ScopeVenue, Target: "Bin ance", Rule: "r", Actor: "a"},
		{Scope: killswitch.ScopeToken, Target: "tok_a", Rule: "r", Actor: ""},
		{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a", Reason: "bell\a"},
		{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a", Reason: strings.Repeat("x", killswitch.MaxReason+1)},
	} {
		if _, err := s.Engage(context.Background(), e); !errors.Is(err, killswitch.ErrInvalid) {
			t.Errorf("Engage(%+v) = %v, want ErrInvalid", e, err)
		}
	}
	if s.Engaged() {
		t.Fatal("an invalid engagement engaged the switch")
	}
}

// TestScrubbedReason: a reason quoting a secret is stored and audited
// without it.
func TestScrubbedReason(t *testing.T) {
	const canary = "CANARY-reason-secret-0001"
	db, _ := openDB(t)
	al := newAuditLog(t)
	s := newSwitch(t, db.Trips(), al, func(o *killswitch.Options) {
		o.Scrub = func(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), canary, "REDACTED")) }
	})
	if _, err := s.Engage(context.Background(), killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a",
		Reason: "key " + canary + " leaked"}); err != nil {
		t.Fatal(err)
	}
	a, _ := db.Trips().Active(context.Background())
	if strings.Contains(a[0].Reason, canary) {
		t.Fatal("secret in the stored reason")
	}
	for _, r := range al.actions(t, "") {
		if strings.Contains(string(r.Raw), canary) {
			t.Fatal("secret in the audit log")
		}
	}
}
