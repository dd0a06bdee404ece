package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/venue"
)

// FuzzCompile feeds config bytes through config.Parse and Compile: no
// panics; every compile error is a positioned *config.Error; a Set that
// compiles evaluates without panicking and never allows a withdrawal it
// was not told to.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(venuesYAML + dailyBudget))
	f.Add([]byte(venuesYAML + "policies:\n  p:\n    operations: [\"*\"]\n    max_notional: [\"1 USDT\", \"2 EUR\"]\n    price_band: \"1%\"\n    hours: [\"Fri 22:00-02:00\"]\n    expr: 'dec_lt(order.price, \"5\")'\n"))
	f.Add([]byte(venuesYAML + "policies:\n  p:\n    rate:\n      - scope: token\n        limit: \"5/s\"\n        burst: 3\n"))
	if files, _ := filepath.Glob(filepath.Join("testdata", "compile", "*.yaml")); len(files) > 0 {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("f.yaml", data)
		if err != nil {
			return
		}
		s, err := policy.Compile(cfg)
		if err != nil {
			es := config.Errors(err)
			if len(es) == 0 {
				t.Fatalf("compile error is not a config.Error: %v", err)
			}
			return
		}
		e := policy.New(policy.Options{})
		e.Load(s)
		for _, name := range s.Names() {
			in := orderInput(name)
			d := e.Evaluate(context.Background(), in)
			if d.Allow && d.Rule != "" || !d.Allow && d.Rule == "" {
				t.Fatalf("inconsistent decision %+v", d)
			}
			in = orderInput(name)
			in.Operation, in.Order = venue.OpWalletWithdraw, nil
			d = e.Evaluate(context.Background(), in)
			if d.Allow {
				found := false
				for _, op := range cfg.Policies[name].Operations {
					found = found || op == venue.OpWalletWithdraw
				}
				if !found {
					t.Fatalf("policy %s allowed a withdrawal without naming it", name)
				}
			}
		}
	})
}
