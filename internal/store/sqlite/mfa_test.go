package sqlite_test

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestMFAStore: what the contract (storetest.MFA, TestContractMFA) leaves
// to each store: the state and the recovery codes survive a reopen of the
// file, times exact to the nanosecond.
func TestMFAStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.MFA()
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	if _, err := s.Update(ctx, func(st *mfa.State) error {
		*st = mfa.State{State: mfa.StateActive, CreatedAt: now, EnrolledAt: now, LastStep: 42, Failures: 2, LastFailure: now, LockedUntil: now.Add(time.Minute)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	digests := make([][]byte, 3)
	for i := range digests {
		d := sha256.Sum256([]byte{byte(i)})
		digests[i] = d[:]
	}
	if err := s.SetRecoveryCodes(ctx, digests); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = db.MFA()
	got, err := s.Load(ctx)
	want := mfa.State{State: mfa.StateActive, CreatedAt: now, EnrolledAt: now, LastStep: 42, Failures: 2, LastFailure: now, LockedUntil: now.Add(time.Minute), RecoveryLeft: 3}
	if err != nil || got != want {
		t.Fatalf("reloaded\n got %+v\nwant %+v (%v)", got, want, err)
	}
	if ok, err := s.UseRecoveryCode(ctx, digests[2], now); !ok || err != nil {
		t.Fatalf("a recovery code stored before the reopen: %v %v", ok, err)
	}
}
