package policy_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/venue"
)

const dailyBudget = `policies:
  p:
    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000 USDT"
`

// sixty is a 60 USDT order (0.002 BTCUSDT at 30000).
func sixty(tok string, at time.Time) *policy.Input {
	in := orderInput("p")
	in.TokenID, in.Time = tok, at
	in.Order.Quantity, in.Order.Price = "0.002", "30000"
	return in
}

// TestBudgetConcurrency: 100 concurrent 60 USDT orders against a 1000 USDT
// daily budget: exactly 16 pass, with the real SQLite store.
func TestBudgetConcurrency(t *testing.T) {
	db, _ := tempDB(t)
	e := policy.New(policy.Options{Budgets: db.Budgets()})
	e.Load(compile(t, dailyBudget))
	var ok, denied atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			d := e.Evaluate(context.Background(), sixty("tok_a", monday))
			switch {
			case d.Allow && d.Hold != nil:
				ok.Add(1)
				_ = d.Hold.Keep(context.Background())
			case d.Rule == "policy.p.budget.daily":
				denied.Add(1)
			default:
				t.Errorf("unexpected decision %+v", d)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 16 || denied.Load() != 84 {
		t.Fatalf("allowed %d, denied %d; want 16 and 84", ok.Load(), denied.Load())
	}
}

// TestBudgetConcurrencyAcrossReopen: 50 concurrent orders, close the
// database (a restart), reopen it, 50 more: still exactly 16 in total.
func TestBudgetConcurrencyAcrossReopen(t *testing.T) {
	_, path := tempDB(t)
	set := compile(t, dailyBudget)
	total := 0
	for round := range 2 {
		db := openDB(t, path)
		e := policy.New(policy.Options{Budgets: db.Budgets()})
		e.Load(set)
		var ok atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				d := e.Evaluate(context.Background(), sixty("tok_a", monday.Add(time.Duration(round)*time.Minute)))
				if d.Allow {
					ok.Add(1)
				} else if d.Rule != "policy.p.budget.daily" {
					t.Errorf("unexpected decision %+v", d)
				}
			})
		}
		wg.Wait()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		total += int(ok.Load())
		if round == 0 && ok.Load() != 16 {
			t.Fatalf("first half: %d allowed, want 16", ok.Load())
		}
	}
	if total != 16 {
		t.Fatalf("allowed %d in total, want 16", total)
	}
}

func TestBudgets(t *testing.T) {
	ctx := context.Background()
	db, _ := tempDB(t)
	e := policy.New(policy.Options{Budgets: db.Budgets()})
	e.Load(compile(t, `policies:
  p:
    time_zone: Asia/Tokyo
    budgets:
      - name: daily
        scope: token
        window: day
        limit: "1000 USDT"
      - name: hourly
        scope: account
        window: 1h
        limit: "1500 USDT"
`))
	eval := func(tok, acct string, at time.Time, qty string) *policy.Decision {
		in := orderInput("p")
		in.TokenID, in.Account, in.Time = tok, acct, at
		in.Order.Quantity, in.Order.Price = qty, "1000"
		return e.Evaluate(ctx, in)
	}
	want := func(d *policy.Decision, rule string) {
		t.Helper()
		if d.Allow != (rule == "") || d.Rule != rule {
			t.Fatalf("%+v, want %q", d, rule)
		}
	}
	t0 := time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC) // 19:00 in Tokyo
	want(eval("tok_a", "A", t0, "0.6"), "")            // a: 600, A: 600
	want(eval("tok_a", "A", t0, "0.5"), "policy.p.budget.daily")
	want(eval("tok_b", "A", t0, "0.8"), "") // b: 800, A: 1400
	want(eval("tok_c", "A", t0, "0.2"), "policy.p.budget.hourly")
	want(eval("tok_c", "B", t0, "0.2"), "") // another account
	// Release gives a reservation back.
	d := eval("tok_a", "A", t0.Add(2*time.Hour), "0.4")
	want(d, "")
	if err := d.Hold.Release(ctx); err != nil { // a: 600 again
		t.Fatal(err)
	}
	// A dry run says allowed and reserves nothing: three in a row fit.
	dry := orderInput("p")
	dry.TokenID, dry.Account, dry.Time, dry.DryRun = "tok_a", "A", t0.Add(2*time.Hour), true
	dry.Order.Quantity, dry.Order.Price = "0.4", "1000"
	for range 3 {
		if d := e.Evaluate(ctx, dry); !d.Allow || d.Hold != nil {
			t.Fatalf("dry run: %+v", d)
		}
	}
	dry.Order.Quantity = "0.41"
	want(e.Evaluate(ctx, dry), "policy.p.budget.daily")
	// The rolling hour has passed for the account; the Tokyo day has not
	// (14:59Z is 23:59 JST) ...
	want(eval("tok_c", "A", t0.Add(90*time.Minute), "0.2"), "")
	want(eval("tok_a", "A", time.Date(2025, 1, 6, 14, 59, 0, 0, time.UTC), "0.41"), "policy.p.budget.daily")
	// ... and at 15:00Z (midnight JST) a new day starts.
	want(eval("tok_a", "A", time.Date(2025, 1, 6, 15, 0, 0, 0, time.UTC), "0.41"), "")
	// Keep, then Release, does nothing more; Release after Keep is a no-op.
	d = eval("tok_b", "A", time.Date(2025, 1, 7, 15, 0, 0, 0, time.UTC), "1")
	want(d, "")
	_ = d.Hold.Keep(ctx)
	_ = d.Hold.Release(ctx)
	want(eval("tok_b", "A", time.Date(2025, 1, 7, 15, 1, 0, 0, time.UTC), "0.001"), "policy.p.budget.daily")
}

func TestBudgetCurrencyAndStore(t *testing.T) {
	ctx := context.Background()
	set := compile(t, dailyBudget)
	// No store: fail closed.
	e := policy.New(policy.Options{})
	e.Load(set)
	if d := e.Evaluate(ctx, sixty("tok_a", monday)); d.Allow || d.Rule != "policy.p.budget.daily" {
		t.Fatalf("no store: %+v", d)
	}
	db, _ := tempDB(t)
	e = policy.New(policy.Options{Budgets: db.Budgets()})
	e.Load(set)
	in := sixty("tok_a", monday)
	in.Order.Instrument = "BTCEUR"
	if d := e.Evaluate(ctx, in); d.Allow || d.Rule != "policy.p.currency" {
		t.Fatalf("EUR order against a USDT budget: %+v", d)
	}
	in = sixty("tok_a", monday)
	in.Order.Price = ""
	if d := e.Evaluate(ctx, in); d.Allow || d.Rule != "policy.p.notional_unknown" {
		t.Fatalf("unknown notional: %+v", d)
	}
	// Reads are not budgeted.
	in = sixty("tok_a", monday)
	in.Operation, in.Order = venue.OpOrderCancel, nil
	if d := e.Evaluate(ctx, in); !d.Allow || d.Hold != nil {
		t.Fatalf("cancel: %+v", d)
	}
	// A closed store denies rather than allowing.
	db.Close()
	if d := e.Evaluate(ctx, sixty("tok_a", monday)); d.Allow {
		t.Fatalf("closed store allowed: %+v", d)
	}
}
