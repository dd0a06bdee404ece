package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
)

// TestMFAAcrossReplicas: replicas checking the same TOTP step at once
// accept it once, and a recovery code presented to every replica at once
// is accepted once.
func TestMFAAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 3)
	now := time.Now()
	if _, err := dbs[0].MFA().Update(ctx, func(st *mfa.State) error {
		*st = mfa.State{State: mfa.StateActive, CreatedAt: now, EnrolledAt: now, LastStep: 100}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	code := sha256.Sum256([]byte("recovery"))
	if err := dbs[1].MFA().SetRecoveryCodes(ctx, [][]byte{code[:]}); err != nil {
		t.Fatal(err)
	}
	var steps, codes atomic.Int64
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(2)
		s := dbs[i%len(dbs)].MFA()
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, func(st *mfa.State) error {
				if st.LastStep >= 101 {
					return mfa.ErrReplay
				}
				st.LastStep = 101
				return nil
			})
			switch {
			case err == nil:
				steps.Add(1)
			case !errors.Is(err, mfa.ErrReplay):
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			ok, err := s.UseRecoveryCode(ctx, code[:], now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				codes.Add(1)
			}
		}()
	}
	wg.Wait()
	if steps.Load() != 1 || codes.Load() != 1 {
		t.Fatalf("step accepted %d times, recovery code %d times; want once each", steps.Load(), codes.Load())
	}
	if st, err := dbs[2].MFA().Load(ctx); err != nil || st.LastStep != 101 || st.RecoveryLeft != 0 {
		t.Fatalf("replica 2 sees %+v %v", st, err)
	}
}
