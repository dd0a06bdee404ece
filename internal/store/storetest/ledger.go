package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store"
)

// LedgerStores is one database's ledger and the stores it writes to,
// for the Ledger suite.
type LedgerStores struct {
	// Ledger keeps its intent records in the database's audit log.
	Ledger  ledger.Store
	Budgets policy.BudgetStore
	Idem    idem.Store
	// Intents returns the request ids of the intent records stored so
	// far (committed).
	Intents func(t *testing.T) map[string]bool
	// NoLog, when not nil, is a ledger on the same database without an
	// audit log: it must refuse intents with ledger.ErrNoAuditLog.
	NoLog ledger.Store
}

// LedgerWrite is one order's write: 60 USDT against a daily budget of
// limit, the key "k<i>" (owner "o<i>"), an intent record with request id
// "r<i>".
func LedgerWrite(i int, limit string) *ledger.Write {
	at := time.Date(2025, 1, 6, 12, 0, 0, i, time.UTC)
	ev := audit.Event{RequestID: fmt.Sprint("r", i), TokenID: "tok_1", Venue: "binance", Method: "POST", Path: "/api/v3/order",
		Operation: "order.place", Instrument: "BTCUSDT", Quantity: "0.001", Price: "60000", ClientOrderID: fmt.Sprint("c", i)}
	rec := idem.Record{Scope: "tok_1/binance", Key: fmt.Sprint("k", i), Fingerprint: []byte(fmt.Sprint("f", i)), ClientOrderID: fmt.Sprint("c", i),
		State: idem.StatePending, Owner: fmt.Sprint("o", i), Created: at, Updated: at}
	return &ledger.Write{Intent: &ev,
		Budget: &ledger.Budget{At: at, Amount: dec("60"), Claims: []policy.Claim{
			{Key: "token:tok_1/daily/USDT/day:2025-01-06@UTC", Since: time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC), Limit: dec(limit)}}},
		Key: &ledger.Key{Record: rec, NotBefore: at.Add(-24 * time.Hour)}}
}

// Ledger checks a ledger.Store: one write stores the reservation, the
// claim and the intent record, a refusal none of them (the budget checked
// before the key), writes with some parts only, and a limit that holds
// under concurrent writes, each opened write with its intent. open
// returns the stores of a fresh, empty database.
func Ledger(t *testing.T, open func(t *testing.T) LedgerStores) {
	t.Run("Open", func(t *testing.T) { ledgerOpen(t, open(t)) })
	t.Run("Parts", func(t *testing.T) { ledgerParts(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { ledgerConcurrent(t, open(t)) })
}

func ledgerOpen(t *testing.T, s LedgerStores) {
	ctx := context.Background()
	w := LedgerWrite(1, "100")
	if err := s.Ledger.Open(ctx, w); err != nil {
		t.Fatal(err)
	}
	if len(w.Budget.IDs) != 1 {
		t.Fatalf("ids %v", w.Budget.IDs)
	}
	if rec, err := s.Idem.Get(ctx, "tok_1/binance", "k1"); err != nil || rec.Owner != "o1" || rec.State != idem.StatePending {
		t.Fatalf("claim: %+v %v", rec, err)
	}
	for _, tc := range []struct {
		name string
		w    *ledger.Write
		want error // nil: *policy.ExceededError
	}{
		// 60 + 60 > 100: refused by the budget, although its key is
		// free: nothing written.
		{"budget", LedgerWrite(2, "100"), nil},
		// The same key again within the limit: taken.
		{"key", func() *ledger.Write { w := LedgerWrite(1, "1000"); w.Intent.RequestID = "r1-again"; return w }(), ledger.ErrKeyTaken},
		// Over budget and a taken key: the budget answers (the policy
		// comes first).
		{"budget before key", LedgerWrite(1, "100"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Ledger.Open(ctx, tc.w)
			var ex *policy.ExceededError
			switch {
			case tc.want == nil && !errors.As(err, &ex):
				t.Fatalf("err %v, want ExceededError", err)
			case tc.want == nil && (!ex.Used.Equal(dec("60")) || !ex.Limit.Equal(dec("100"))):
				t.Fatalf("err %v: used 60 of 100", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.w.Budget.IDs != nil {
				t.Fatalf("ids %v after a refusal", tc.w.Budget.IDs)
			}
		})
	}
	w3 := LedgerWrite(1, "1000")
	if err := s.Ledger.Open(ctx, w3); !errors.Is(err, ledger.ErrKeyTaken) || w3.Key.Stored.Owner != "o1" || w3.Key.Stored.ClientOrderID != "c1" {
		t.Fatalf("taken: %v %+v", err, w3.Key.Stored)
	}
	if _, err := s.Idem.Get(ctx, "tok_1/binance", "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused write claimed its key: %v", err)
	}
	// The refused writes reserved nothing: 60 used of the day.
	day := LedgerWrite(0, "100").Budget.Claims[0]
	if u := used(t, s.Budgets, day.Key, day.Since); !u.Equal(dec("60")) {
		t.Fatalf("used %s after refusals, want 60", u)
	}
	if got := s.Intents(t); len(got) != 1 || !got["r1"] {
		t.Fatalf("intent records %v, want r1 only", got)
	}
	// The reservation is an ordinary budget entry: Release gives it back.
	if err := s.Budgets.Release(ctx, w.Budget.IDs); err != nil {
		t.Fatal(err)
	}
	if u := used(t, s.Budgets, day.Key, day.Since); !u.IsZero() {
		t.Fatalf("used %s after release", u)
	}
	// An expired key is claimed again by the ledger.
	w4 := LedgerWrite(1, "100")
	w4.Key.Record.Owner, w4.Intent.RequestID = "o1-later", "r1-later"
	w4.Key.NotBefore = w4.Key.Record.Created.Add(time.Nanosecond)
	if err := s.Ledger.Open(ctx, w4); err != nil {
		t.Fatalf("expired key: %v", err)
	}
	if rec, err := s.Idem.Get(ctx, "tok_1/binance", "k1"); err != nil || rec.Owner != "o1-later" {
		t.Fatalf("claim over an expired key: %+v %v", rec, err)
	}
	if s.NoLog != nil {
		if err := s.NoLog.Open(ctx, LedgerWrite(9, "1000")); !errors.Is(err, ledger.ErrNoAuditLog) {
			t.Fatalf("no audit log: %v", err)
		}
		if _, err := s.Idem.Get(ctx, "tok_1/binance", "k9"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a write refused for want of a log claimed its key: %v", err)
		}
	}
}

// ledgerParts: writes with only some parts store just those.
func ledgerParts(t *testing.T, s LedgerStores) {
	ctx := context.Background()
	budgetOnly := LedgerWrite(1, "1000")
	budgetOnly.Intent, budgetOnly.Key = nil, nil
	if err := s.Ledger.Open(ctx, budgetOnly); err != nil || len(budgetOnly.Budget.IDs) != 1 {
		t.Fatalf("budget only: %v %v", budgetOnly.Budget.IDs, err)
	}
	keyOnly := LedgerWrite(2, "1000")
	keyOnly.Intent, keyOnly.Budget = nil, nil
	if err := s.Ledger.Open(ctx, keyOnly); err != nil {
		t.Fatalf("key only: %v", err)
	}
	intentOnly := LedgerWrite(3, "1000")
	intentOnly.Budget, intentOnly.Key = nil, nil
	if err := s.Ledger.Open(ctx, intentOnly); err != nil {
		t.Fatalf("intent only: %v", err)
	}
	if err := s.Ledger.Open(ctx, &ledger.Write{}); err != nil {
		t.Fatalf("empty write: %v", err)
	}
	day := budgetOnly.Budget.Claims[0]
	if u := used(t, s.Budgets, day.Key, day.Since); !u.Equal(dec("60")) {
		t.Fatalf("used %s, want 60", u)
	}
	for k, want := range map[string]bool{"k1": false, "k2": true, "k3": false} {
		_, err := s.Idem.Get(ctx, "tok_1/binance", k)
		if want != (err == nil) {
			t.Fatalf("key %s: %v", k, err)
		}
	}
	if got := s.Intents(t); len(got) != 1 || !got["r3"] {
		t.Fatalf("intent records %v, want r3 only", got)
	}
	bad := LedgerWrite(4, "1000")
	bad.Budget.Amount = dec("-1")
	if err := s.Ledger.Open(ctx, bad); err == nil {
		t.Fatal("negative amount accepted")
	}
	if _, err := s.Idem.Get(ctx, "tok_1/binance", "k4"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused write claimed its key: %v", err)
	}
}

// ledgerConcurrent: 50 concurrent 60 USDT orders against 1000 USDT, with
// 10 more repeating keys of the first ten: exactly 16 opened, each with
// its intent record, and every key claimed once.
func ledgerConcurrent(t *testing.T, s LedgerStores) {
	ctx := context.Background()
	var mu sync.Mutex
	opened := map[int]bool{}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			n := i
			w := LedgerWrite(i, "1000")
			if i >= 50 {
				n = i - 50
				w = LedgerWrite(n, "1000")
				w.Intent.RequestID = fmt.Sprint("r", n, "-twin")
				w.Key.Record.Owner = fmt.Sprint("o", n, "-twin")
			}
			err := s.Ledger.Open(ctx, w)
			var ex *policy.ExceededError
			switch {
			case err == nil:
				mu.Lock()
				if opened[n] {
					t.Errorf("key k%d opened twice", n)
				}
				opened[n] = true
				mu.Unlock()
			case errors.As(err, &ex), errors.Is(err, ledger.ErrKeyTaken):
			default:
				t.Errorf("unexpected: %v", err)
			}
		})
	}
	wg.Wait()
	if len(opened) != 16 {
		t.Fatalf("%d orders opened, want 16", len(opened))
	}
	if got := s.Intents(t); len(got) != 16 {
		t.Fatalf("%d intent records, want 16: %v", len(got), got)
	}
	day := LedgerWrite(0, "1000").Budget.Claims[0]
	if u := used(t, s.Budgets, day.Key, day.Since); !u.Equal(dec("960")) {
		t.Fatalf("used %s, want 960", u)
	}
}
