package sqlite_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/sqlite"
)

func TestMFAStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.MFA()
	if st, err := s.Load(ctx); err != nil || st != (mfa.State{}) {
		t.Fatalf("empty: %+v %v", st, err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	st, err := s.Update(ctx, func(st *mfa.State) error {
		*st = mfa.State{State: mfa.StateActive, CreatedAt: now, EnrolledAt: now, LastStep: 42, Failures: 2, LastFailure: now, LockedUntil: now.Add(time.Minute)}
		return nil
	})
	if err != nil || st.LastStep != 42 {
		t.Fatalf("update: %+v %v", st, err)
	}
	digests := make([][]byte, 3)
	for i := range digests {
		d := sha256.Sum256([]byte{byte(i)})
		digests[i] = d[:]
	}
	if err := s.SetRecoveryCodes(ctx, digests); err != nil {
		t.Fatal(err)
	}
	// Survives a reopen, times exact.
	db.Close()
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
	// An error from fn leaves the state alone.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, func(st *mfa.State) error { st.LastStep = 99; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx); got.LastStep != 42 {
		t.Fatalf("rolled back? %d", got.LastStep)
	}
	// A recovery code is used once, also under concurrency.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseRecoveryCode(ctx, digests[1], now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("recovery code used %d times", wins)
	}
	if ok, _ := s.UseRecoveryCode(ctx, bytes.Repeat([]byte{9}, 32), now); ok {
		t.Fatal("unknown digest used")
	}
	if got, _ := s.Load(ctx); got.RecoveryLeft != 2 {
		t.Fatalf("left %d", got.RecoveryLeft)
	}
	// Concurrent step updates: each step is accepted once.
	accepted := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, func(st *mfa.State) error {
				if st.LastStep >= 43 {
					return mfa.ErrReplay
				}
				st.LastStep = 43
				return nil
			})
			if err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			} else if !errors.Is(err, mfa.ErrReplay) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("step accepted %d times", accepted)
	}
	// A State "" clears everything.
	if _, err := s.Update(ctx, func(st *mfa.State) error { *st = mfa.State{}; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx); got != (mfa.State{}) {
		t.Fatalf("after clear %+v", got)
	}
	if ok, _ := s.UseRecoveryCode(ctx, digests[0], now); ok {
		t.Fatal("a recovery code outlived the reset")
	}
	// Bad digests are refused by the schema.
	if err := s.SetRecoveryCodes(ctx, [][]byte{{1, 2, 3}}); err == nil {
		t.Fatal("short digest stored")
	}
}
