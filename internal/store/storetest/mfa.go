package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
)

// MFA runs the mfa.Store contract on a store from open (a fresh
// database).
func MFA(t *testing.T, open func(t *testing.T) mfa.Store) {
	ctx := context.Background()
	s := open(t)
	if st, err := s.Load(ctx); err != nil || st != (mfa.State{}) {
		t.Fatalf("empty: %+v %v", st, err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	want := mfa.State{State: mfa.StateActive, CreatedAt: now, EnrolledAt: now, LastStep: 42, Failures: 2, LastFailure: now, LockedUntil: now.Add(time.Minute)}
	st, err := s.Update(ctx, func(st *mfa.State) error {
		if *st != (mfa.State{}) {
			t.Errorf("Update on an empty store got %+v", *st)
		}
		*st = want
		st.RecoveryLeft = 99 // ignored
		return nil
	})
	if err != nil || st != want {
		t.Fatalf("Update = %+v %v; want %+v", st, err, want)
	}
	digests := make([][]byte, 3)
	for i := range digests {
		d := sha256.Sum256([]byte{byte(i)})
		digests[i] = d[:]
	}
	if err := s.SetRecoveryCodes(ctx, digests); err != nil {
		t.Fatal(err)
	}
	want.RecoveryLeft = 3
	if got, err := s.Load(ctx); err != nil || got != want {
		t.Fatalf("Load\n got %+v\nwant %+v (%v)", got, want, err)
	}
	// An error from fn leaves the state alone.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, func(st *mfa.State) error { st.LastStep = 99; return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update with a failing fn: %v", err)
	}
	if got, _ := s.Load(ctx); got.LastStep != 42 {
		t.Fatalf("a failed Update stored step %d", got.LastStep)
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
	if ok, err := s.UseRecoveryCode(ctx, bytes.Repeat([]byte{9}, 32), now); ok || err != nil {
		t.Fatalf("unknown digest used: %v %v", ok, err)
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
	// New codes replace the old ones, used or not.
	fresh := sha256.Sum256([]byte("fresh"))
	if err := s.SetRecoveryCodes(ctx, [][]byte{fresh[:]}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.UseRecoveryCode(ctx, digests[0], now); ok {
		t.Fatal("a replaced recovery code was accepted")
	}
	if got, _ := s.Load(ctx); got.RecoveryLeft != 1 {
		t.Fatalf("left %d after replacing, want 1", got.RecoveryLeft)
	}
	// A State "" clears everything.
	if _, err := s.Update(ctx, func(st *mfa.State) error { *st = mfa.State{}; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx); got != (mfa.State{}) {
		t.Fatalf("after clear %+v", got)
	}
	if ok, _ := s.UseRecoveryCode(ctx, fresh[:], now); ok {
		t.Fatal("a recovery code outlived the reset")
	}
	// Bad digests and states are refused.
	if err := s.SetRecoveryCodes(ctx, [][]byte{{1, 2, 3}}); err == nil {
		t.Fatal("short digest stored")
	}
	if _, err := s.Update(ctx, func(st *mfa.State) error { st.State = "bogus"; st.CreatedAt = now; return nil }); err == nil {
		t.Fatal("an unknown state was stored")
	}
	if _, err := s.Update(ctx, func(st *mfa.State) error { st.State = mfa.StatePending; st.LastStep = -1; return nil }); err == nil {
		t.Fatal("a negative step was stored")
	}
	if got, _ := s.Load(ctx); got != (mfa.State{}) {
		t.Fatalf("refused updates stored %+v", got)
	}
}
