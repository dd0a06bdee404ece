package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/policy"
)

// TestBudgetUsage: the windows BudgetUsage reads hold exactly what
// Evaluate reserved under the same keys, per token and per account; it
// reserves nothing itself; unknown policies and policies without budgets
// have none.
func TestBudgetUsage(t *testing.T) {
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
  free: {}
`))
	t0 := time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC)
	for _, o := range []struct{ tok, acct, qty string }{{"tok_a", "A", "0.6"}, {"tok_b", "A", "0.25"}, {"tok_a", "B", "0.1"}} {
		in := orderInput("p")
		in.TokenID, in.Account, in.Time = o.tok, o.acct, t0
		in.Order.Quantity, in.Order.Price = o.qty, "1000"
		if d := e.Evaluate(ctx, in); !d.Allow {
			t.Fatalf("%+v", d)
		}
	}
	for _, tc := range []struct {
		name   string
		q      policy.UsageQuery
		want   map[string]string // subject/budget -> used
		policy string
	}{
		{"token a on both accounts", policy.UsageQuery{TokenID: "tok_a", Policy: "p", Accounts: []string{"A", "B"}, At: t0.Add(time.Minute)},
			map[string]string{"token:tok_a/daily": "700", "account:A/hourly": "850", "account:B/hourly": "100"}, "p"},
		{"token b", policy.UsageQuery{TokenID: "tok_b", Policy: "p", Accounts: []string{"A"}, At: t0},
			map[string]string{"token:tok_b/daily": "250", "account:A/hourly": "850"}, "p"},
		{"the hour has passed", policy.UsageQuery{TokenID: "tok_a", Policy: "p", Accounts: []string{"A"}, At: t0.Add(61 * time.Minute)},
			map[string]string{"token:tok_a/daily": "700", "account:A/hourly": "0"}, "p"},
		{"next day in Tokyo", policy.UsageQuery{TokenID: "tok_a", Policy: "p", Accounts: []string{"A"}, At: time.Date(2025, 1, 6, 15, 0, 0, 0, time.UTC)},
			map[string]string{"token:tok_a/daily": "0", "account:A/hourly": "0"}, "p"},
		{"venue without a credential", policy.UsageQuery{TokenID: "tok_c", Policy: "p", Accounts: []string{""}, Venues: []string{"binance"}, At: t0},
			map[string]string{"token:tok_c/daily": "0", "account:venue:binance/hourly": "0"}, "p"},
		{"no budgets", policy.UsageQuery{TokenID: "tok_a", Policy: "free", Accounts: []string{"A"}, At: t0}, map[string]string{}, ""},
		{"unknown policy", policy.UsageQuery{TokenID: "tok_a", Policy: "nope", At: t0}, map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.BudgetUsage(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d windows, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, u := range got {
				w, ok := tc.want[u.Subject+"/"+u.Budget]
				if !ok || u.Used.String() != w || u.Policy != tc.policy || u.Currency != "USDT" {
					t.Errorf("%s/%s: used %s of %s, want %q", u.Subject, u.Budget, u.Used, u.Limit, w)
				}
				if u.Budget == "daily" && (u.Window != "day" || u.Limit.String() != "1000") || u.Budget == "hourly" && (u.Window != "1h0m0s" || u.Limit.String() != "1500") {
					t.Errorf("%+v", u)
				}
			}
		})
	}
	// Reading twice changes nothing.
	a, _ := e.BudgetUsage(ctx, policy.UsageQuery{TokenID: "tok_a", Policy: "p", Accounts: []string{"A"}, At: t0})
	b, _ := e.BudgetUsage(ctx, policy.UsageQuery{TokenID: "tok_a", Policy: "p", Accounts: []string{"A"}, At: t0})
	if a[0].Used.String() != b[0].Used.String() || a[1].Used.String() != b[1].Used.String() {
		t.Fatalf("reading reserved something: %+v then %+v", a, b)
	}
	if _, err := policy.New(policy.Options{}).BudgetUsage(ctx, policy.UsageQuery{Policy: "p"}); err != nil {
		t.Fatalf("no set loaded: %v", err)
	}
}
