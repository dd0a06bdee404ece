package policy_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/venue"
)

// recordingRates is a SharedRates that records its calls and answers with
// wait and err; the Redis implementation is tested in store/redis.
type recordingRates struct {
	mu    sync.Mutex
	takes [][]policy.RateKey
	peeks [][]policy.RateKey
	wait  time.Duration
	err   error
}

func (r *recordingRates) Take(_ context.Context, keys []policy.RateKey) (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takes = append(r.takes, slices.Clone(keys))
	return r.wait, r.err
}

func (r *recordingRates) Peek(_ context.Context, keys []policy.RateKey) (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peeks = append(r.peeks, slices.Clone(keys))
	return r.wait, r.err
}

const sharedPolicy = "policies:\n  p:\n    rate:\n      - scope: token\n        limit: \"2/s\"\n      - scope: account\n        limit: \"30/m\"\n        burst: 5\n"

func sharedReq(e *policy.Engine, tok string, dry bool) *policy.Decision {
	in := orderInput("p")
	in.TokenID, in.Account, in.Time, in.DryRun = tok, "acct1", monday, dry
	in.Operation, in.Order = venue.OpMarketRead, nil
	return e.Evaluate(context.Background(), in)
}

func TestSharedRatesKeysAndWait(t *testing.T) {
	rr := &recordingRates{}
	e := policy.New(policy.Options{Rates: rr})
	e.Load(compile(t, sharedPolicy))
	for range 5 {
		if d := sharedReq(e, "tok_a", false); !d.Allow {
			t.Fatalf("denied with a shared store that allows: %+v", d)
		}
	}
	if len(rr.takes) != 5 || len(rr.peeks) != 0 {
		t.Fatalf("takes %d peeks %d, want 5 and 0", len(rr.takes), len(rr.peeks))
	}
	want := []policy.RateKey{
		{Key: "p|token:tok_a|2/s/2", Rate: 2, Period: time.Second, Burst: 2},
		{Key: "p|account:acct1|30/m/5", Rate: 30, Period: time.Minute, Burst: 5},
	}
	if !slices.Equal(rr.takes[0], want) {
		t.Fatalf("keys %+v, want %+v", rr.takes[0], want)
	}
	if d := sharedReq(e, "tok_a", true); !d.Allow || len(rr.peeks) != 1 || len(rr.takes) != 5 {
		t.Fatalf("dry run: %+v, peeks %d takes %d", d, len(rr.peeks), len(rr.takes))
	}
	rr.wait = 300 * time.Millisecond
	d := sharedReq(e, "tok_a", false)
	if d.Allow || d.Rule != "policy.p.rate" || d.Status != http.StatusTooManyRequests || d.RetryAfter != rr.wait {
		t.Fatalf("wait from the store: %+v", d)
	}
	if d := sharedReq(e, "tok_a", true); d.Allow || d.RetryAfter != rr.wait {
		t.Fatalf("dry run with a wait: %+v", d)
	}
}

func TestSharedRatesFailClosed(t *testing.T) {
	for _, mode := range []policy.RateFallback{"", policy.FallbackFailClosed} {
		rr := &recordingRates{err: errors.New("connection refused")}
		e := policy.New(policy.Options{Rates: rr, RatesFallback: policy.RatesFallback{Mode: mode}})
		e.Load(compile(t, sharedPolicy))
		for _, dry := range []bool{false, true} {
			d := sharedReq(e, "tok_a", dry)
			if d.Allow || d.Rule != policy.RuleRateUnavailable || d.Status != http.StatusServiceUnavailable || d.RetryAfter <= 0 {
				t.Fatalf("mode %q dry %v: %+v", mode, dry, d)
			}
		}
	}
	// A policy without rate rules never asks the store.
	rr := &recordingRates{err: errors.New("down")}
	e := policy.New(policy.Options{Rates: rr})
	e.Load(compile(t, "policies:\n  p:\n    operations: [market.read]\n"))
	if d := sharedReq(e, "tok_a", false); !d.Allow || len(rr.takes) != 0 {
		t.Fatalf("no rate rules: %+v, takes %d", d, len(rr.takes))
	}
}

func TestSharedRatesLocalShare(t *testing.T) {
	rr := &recordingRates{err: errors.New("connection refused")}
	e := policy.New(policy.Options{Rates: rr, RatesFallback: policy.RatesFallback{Mode: policy.FallbackLocalShare, Replicas: 2}})
	e.Load(compile(t, sharedPolicy))
	// 2/s shared by 2 replicas: this one allows 1 per second.
	if d := sharedReq(e, "tok_a", true); !d.Allow {
		t.Fatalf("dry run: %+v", d)
	}
	if d := sharedReq(e, "tok_a", false); !d.Allow {
		t.Fatalf("first: %+v", d)
	}
	d := sharedReq(e, "tok_a", false)
	if d.Allow || d.Rule != "policy.p.rate" || d.Status != http.StatusTooManyRequests || d.RetryAfter <= 0 || d.RetryAfter > time.Second {
		t.Fatalf("second within the share: %+v", d)
	}
	// The account's 30/m burst 5 over 2 replicas is burst 2 here: tok_b
	// gets one (the account bucket's second), tok_c none.
	if d := sharedReq(e, "tok_b", false); !d.Allow {
		t.Fatalf("tok_b: %+v", d)
	}
	if d := sharedReq(e, "tok_c", false); d.Allow || d.Rule != "policy.p.rate" || d.RetryAfter < time.Second {
		t.Fatalf("tok_c (account share exhausted): %+v", d)
	}
	// Replicas below 1 means the whole limit.
	e = policy.New(policy.Options{Rates: rr, RatesFallback: policy.RatesFallback{Mode: policy.FallbackLocalShare}})
	e.Load(compile(t, sharedPolicy))
	for i := range 2 {
		if d := sharedReq(e, "tok_a", false); !d.Allow {
			t.Fatalf("replicas 0, request %d: %+v", i, d)
		}
	}
}

func TestParseRateFallback(t *testing.T) {
	for in, want := range map[string]policy.RateFallback{"": policy.FallbackFailClosed, "fail_closed": policy.FallbackFailClosed, "local_share": policy.FallbackLocalShare} {
		if got, err := policy.ParseRateFallback(in); err != nil || got != want {
			t.Errorf("ParseRateFallback(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := policy.ParseRateFallback("fail_open"); err == nil {
		t.Error("fail_open accepted")
	}
}

// TestSharedRatesLogsTransitions: an outage logs one warning, not one per
// request, and the recovery one line.
func TestSharedRatesLogsTransitions(t *testing.T) {
	var buf bytes.Buffer
	rr := &recordingRates{err: errors.New("connection refused")}
	e := policy.New(policy.Options{Rates: rr, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	e.Load(compile(t, sharedPolicy))
	for range 5 {
		sharedReq(e, "tok_a", false)
	}
	rr.err = nil
	for range 3 {
		if d := sharedReq(e, "tok_a", false); !d.Allow {
			t.Fatalf("after recovery: %+v", d)
		}
	}
	out := buf.String()
	if strings.Count(out, "level=WARN") != 1 || strings.Count(out, "level=INFO") != 1 || !strings.Contains(out, "fallback=fail_closed") {
		t.Fatalf("log:\n%s", out)
	}
}
