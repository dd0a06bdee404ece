package killswitch_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// openDB opens a fresh database file (closed at cleanup).
func openDB(t testing.TB) (*sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keystile.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

// flaky wraps a real store and fails every call while down is set (a
// database that is briefly unwritable).
type flaky struct {
	killswitch.Store
	down atomic.Bool
}

var errDown = errors.New("store down")

func (f *flaky) Engage(ctx context.Context, t killswitch.Trip) (killswitch.Trip, bool, error) {
	if f.down.Load() {
		return killswitch.Trip{}, false, errDown
	}
	return f.Store.Engage(ctx, t)
}

func (f *flaky) Active(ctx context.Context) ([]killswitch.Trip, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.Active(ctx)
}

func (f *flaky) Clear(ctx context.Context, fl killswitch.Filter, by, reason string, at time.Time) ([]killswitch.Trip, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.Clear(ctx, fl, by, reason, at)
}

// auditLog is a real audit log on a JSONL file, with its records read
// back for assertions.
type auditLog struct {
	*audit.Log
	path string
	keys audit.Keys
}

func newAuditLog(t testing.TB) *auditLog {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	st, err := audit.OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), Identity: []byte("killswitch test identity key 0001")}
	l, err := audit.Open(context.Background(), audit.Options{Store: st, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return &auditLog{Log: l, path: path, keys: keys}
}

// actions returns the durable action records, optionally of one operation.
func (a *auditLog) actions(t testing.TB, op string) []audit.Record {
	t.Helper()
	r, err := audit.OpenJSONLReader(a.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Record
	if err := r.Scan(context.Background(), 1, func(rec audit.Record) error {
		if rec.Kind == audit.KindAction && (op == "" || rec.Operation == op) {
			out = append(out, rec)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// newSwitch builds a switch on store with short timeouts.
func newSwitch(t testing.TB, store killswitch.Store, a killswitch.Auditor, o ...func(*killswitch.Options)) *killswitch.Switch {
	t.Helper()
	opts := killswitch.Options{Store: store, Audit: a, Refresh: 50 * time.Millisecond, DrainTimeout: 2 * time.Second,
		CancelBackoff: 10 * time.Millisecond}
	for _, f := range o {
		f(&opts)
	}
	s, err := killswitch.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// panicAll engages the whole switch as an admin would.
func panicAll(t testing.TB, s *killswitch.Switch) killswitch.Engaged {
	t.Helper()
	res, err := s.Engage(context.Background(), killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: killswitch.RulePanic,
		Actor: killswitch.AdminActor(1000), Reason: "test panic"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
