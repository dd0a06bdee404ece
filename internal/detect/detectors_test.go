package detect_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/detect"
)

// warmupOrders: 30 orders of about 60 USDT, one every 5 minutes (2.5 h).
func warmupOrders(tok string, from time.Time) []audit.Event {
	var evs []audit.Event
	for i := range 30 {
		evs = append(evs, order(tok, from.Add(time.Duration(i)*5*time.Minute), jitter(60, i)))
	}
	return evs
}

// TestOrderSize feeds synthetic order streams, adversarial ones included,
// and checks which orders the order_size detector reports.
func TestOrderSize(t *testing.T) {
	const yaml = "detectors:\n  order_size: {factor: 5, warmup_events: 20, warmup_time: 1h}\n"
	after := t0.Add(3 * time.Hour)
	for _, tc := range []struct {
		name   string
		stream func() []audit.Event
		want   int // order_size findings
		check  func(t *testing.T, fs []detect.Finding)
	}{
		{"normal orders raise nothing", func() []audit.Event {
			return append(warmupOrders("tok_a", t0), order("tok_a", after, 70), order("tok_a", after.Add(time.Minute), 55))
		}, 0, nil},
		{"10x after warm-up", func() []audit.Event {
			return append(warmupOrders("tok_a", t0), order("tok_a", after, 600))
		}, 1, func(t *testing.T, fs []detect.Finding) {
			ev := fs[0].Evidence
			if ev.Observed != 600 || ev.Unit != "USDT" || ev.Factor != 5 || ev.Baseline < 55 || ev.Baseline > 80 || ev.Observations != 30 {
				t.Errorf("evidence %+v", ev)
			}
			if fs[0].Severity != detect.SeverityCritical || fs[0].TokenID != "tok_a" || len(ev.Requests) != 1 {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"3x is within factor 5", func() []audit.Event {
			return append(warmupOrders("tok_a", t0), order("tok_a", after, 180))
		}, 0, nil},
		{"nothing during warm-up (count)", func() []audit.Event {
			evs := warmupOrders("tok_a", t0)[:10]
			return append(evs, order("tok_a", t0.Add(2*time.Hour), 6000))
		}, 0, nil},
		{"nothing during warm-up (time)", func() []audit.Event {
			var evs []audit.Event
			for i := range 30 {
				evs = append(evs, order("tok_a", t0.Add(time.Duration(i)*time.Second), 60))
			}
			return append(evs, order("tok_a", t0.Add(time.Minute), 6000))
		}, 0, nil},
		{"burst right after warm-up", func() []audit.Event {
			evs := warmupOrders("tok_a", t0)[:20]
			return append(evs, order("tok_a", t0.Add(100*time.Minute), 700), order("tok_a", t0.Add(101*time.Minute), 700))
		}, 1, nil}, // the second is within the cooldown (same subject)
		{"outliers during warm-up do not set the baseline", func() []audit.Event {
			evs := warmupOrders("tok_a", t0)
			for _, i := range []int{3, 11, 19} {
				evs[i] = order("tok_a", evs[i].Time, 3000) // 50x, three times
			}
			return append(evs, order("tok_a", after, 600))
		}, 1, func(t *testing.T, fs []detect.Finding) {
			if b := fs[0].Evidence.Baseline; b > 100 {
				t.Errorf("baseline %v: the warm-up outliers moved it", b)
			}
		}},
		{"each token has its own baseline", func() []audit.Event {
			evs := warmupOrders("tok_a", t0)
			for i := range 30 {
				evs = append(evs, order("tok_b", t0.Add(time.Duration(i)*5*time.Minute), jitter(6000, i)))
			}
			return append(evs, order("tok_b", after, 6000), order("tok_a", after, 6000))
		}, 1, func(t *testing.T, fs []detect.Finding) {
			if fs[0].TokenID != "tok_a" {
				t.Errorf("reported %s", fs[0].TokenID)
			}
		}},
		{"denied orders are judged but not learned", func() []audit.Event {
			evs := warmupOrders("tok_a", t0)
			for i := range 40 {
				e := order("tok_a", after.Add(time.Duration(i)*time.Minute), 250)
				e.Decision, e.Rule, e.Status, e.Upstream = audit.Deny, "policy.p.max_notional", 403, 0
				evs = append(evs, e)
			}
			return append(evs, order("tok_a", after.Add(24*time.Hour), 600))
		}, 1, nil},
		{"quantity per instrument when there is no notional", func() []audit.Event {
			var evs []audit.Event
			for i := range 30 {
				e := order("tok_a", t0.Add(time.Duration(i)*5*time.Minute), 60)
				e.Notional = ""
				evs = append(evs, e)
			}
			e := order("tok_a", after, 600)
			e.Notional = ""
			return append(evs, e)
		}, 1, func(t *testing.T, fs []detect.Finding) {
			if fs[0].Evidence.Unit != "BTCUSDT quantity" {
				t.Errorf("unit %q", fs[0].Evidence.Unit)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, settings(t, yaml))
			rg.feed(t, tc.stream()...)
			fs := rg.n.of(detect.OrderSize)
			if len(fs) != tc.want {
				t.Fatalf("%d order_size findings, want %d: %+v", len(fs), tc.want, fs)
			}
			if tc.check != nil {
				tc.check(t, fs)
			}
		})
	}
}

// TestOrderSizeSlowRamp: a bot that grows its orders by 2 % per order,
// always far below factor × its current average (an EWMA alone would
// follow it forever), cannot walk the baseline up within a day: the usual
// value rises by at most 1.5× per day, so the ramp is reported once it
// passes 5 × 1.5 × the warm-up's usual value, and over several days the
// baseline follows at most 1.5× per day.
func TestOrderSizeSlowRamp(t *testing.T) {
	const yaml = "detectors:\n  order_size: {factor: 5, warmup_events: 20, warmup_time: 1h}\n"
	// The warm-up orders are 54-66 USDT: their usual value
	// (exp(median + 2·sd)) is at most 75.
	const warmUsual = 75.0
	t.Run("one day", func(t *testing.T) {
		rg := newRig(t, settings(t, yaml))
		evs := warmupOrders("tok_a", t0)
		size := 60.0
		for i := range 200 {
			size *= 1.02
			evs = append(evs, order("tok_a", t0.Add(3*time.Hour+time.Duration(i)*time.Minute), size))
		}
		rg.feed(t, evs...)
		fs := rg.n.of(detect.OrderSize)
		if len(fs) == 0 {
			t.Fatalf("the ramp to %.0f USDT (%.0f×) was never reported", size, size/60)
		}
		first := fs[0].Evidence
		if first.Baseline > 1.5*warmUsual || first.Observed > 5*1.5*warmUsual*1.02 {
			t.Fatalf("first reported at %.0f USDT against a baseline of %.1f: the baseline was walked up", first.Observed, first.Baseline)
		}
	})
	t.Run("three days", func(t *testing.T) {
		rg := newRig(t, settings(t, yaml))
		evs := warmupOrders("tok_a", t0)
		size := 60.0
		for day := 1; day <= 3; day++ {
			for i := range 100 {
				size *= 1.02
				evs = append(evs, order("tok_a", t0.Add(time.Duration(day)*24*time.Hour+time.Duration(i)*time.Minute), size))
			}
		}
		rg.feed(t, evs...)
		fs := rg.n.of(detect.OrderSize)
		if len(fs) == 0 {
			t.Fatal("a 380× ramp over three days was never reported")
		}
		for _, f := range fs {
			if f.Evidence.Baseline > warmUsual*1.5*1.5*1.5 {
				t.Fatalf("baseline %v after at most 3 days of ramping: more than 1.5× per day", f.Evidence.Baseline)
			}
		}
	})
}

// TestOrderRate: orders per minute against the learned rate, with a
// minimum count, reported once per window.
func TestOrderRate(t *testing.T) {
	const yaml = "detectors:\n  order_rate: {factor: 2, window: 1m, min_count: 5, warmup_events: 30, warmup_time: 30m}\n"
	warmupRate := func() []audit.Event {
		var evs []audit.Event
		for m := range 40 {
			n := 2 + m%2 // 2 or 3 orders a minute
			for i := range n {
				evs = append(evs, order("tok_a", t0.Add(time.Duration(m)*time.Minute+time.Duration(i)*10*time.Second), 60))
			}
		}
		return evs
	}
	burstAt := func(at time.Time, n int) []audit.Event {
		var evs []audit.Event
		for i := range n {
			evs = append(evs, order("tok_a", at.Add(time.Duration(i)*time.Second), 60))
		}
		return evs
	}
	later := t0.Add(50 * time.Minute)
	for _, tc := range []struct {
		name   string
		stream []audit.Event
		want   int
	}{
		{"usual rate", append(warmupRate(), burstAt(later, 3)...), 0},
		{"12 in a minute, reported once", append(warmupRate(), burstAt(later, 12)...), 1},
		{"during warm-up", burstAt(t0, 30), 0},
		{"denied orders count too", func() []audit.Event {
			evs := burstAt(later, 12)
			for i := range evs {
				evs[i].Decision, evs[i].Rule, evs[i].Status = audit.Deny, "policy.p.rate", 429
			}
			return append(warmupRate(), evs...)
		}(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, settings(t, yaml))
			rg.feed(t, tc.stream...)
			fs := rg.n.of(detect.OrderRate)
			if len(fs) != tc.want {
				t.Fatalf("%d order_rate findings, want %d: %+v", len(fs), tc.want, fs)
			}
			if tc.want > 0 {
				ev := fs[0].Evidence
				if ev.Baseline < 2 || ev.Baseline > 5 || ev.Threshold < 5 || len(ev.Requests) == 0 || ev.Unit != "orders per 1m0s" {
					t.Errorf("evidence %+v", ev)
				}
			}
		})
	}
	t.Run("min_count holds for a slow bot", func(t *testing.T) {
		rg := newRig(t, settings(t, yaml))
		var evs []audit.Event
		for m := range 40 {
			evs = append(evs, order("tok_a", t0.Add(time.Duration(m)*time.Minute), 60)) // one a minute
		}
		rg.feed(t, append(evs, burstAt(later, 4)...)...)
		if fs := rg.n.of(detect.OrderRate); len(fs) != 0 {
			t.Fatalf("4 orders in a minute reported under min_count 5: %+v", fs)
		}
		rg.feed(t, burstAt(later.Add(10*time.Minute), 5)...)
		if fs := rg.n.of(detect.OrderRate); len(fs) != 1 {
			t.Fatalf("5 orders in a minute (usual 1): %d findings", len(fs))
		}
	})
}

// TestOrderNotional: notional per window and per currency.
func TestOrderNotional(t *testing.T) {
	rg := newRig(t, settings(t, "detectors:\n  order_notional: {factor: 2, window: 10m, warmup_events: 10, warmup_time: 1h}\n"))
	var evs []audit.Event
	for w := range 15 { // 15 windows of 10 orders of ~60 USDT
		for i := range 10 {
			evs = append(evs, order("tok_a", t0.Add(time.Duration(w)*10*time.Minute+time.Duration(i)*time.Minute), jitter(60, i+w)))
		}
	}
	// A window in another currency does not mix with USDT.
	for i := range 3 {
		e := order("tok_a", t0.Add(151*time.Minute+time.Duration(i)*time.Second), 5000)
		e.Notional = "5000 EUR"
		evs = append(evs, e)
	}
	rg.feed(t, evs...)
	if fs := rg.n.of(detect.OrderNotional); len(fs) != 0 {
		t.Fatalf("normal windows reported: %+v", fs)
	}
	// 20 orders of 100 USDT in one window: 2000 against ~600.
	var big []audit.Event
	for i := range 20 {
		big = append(big, order("tok_a", t0.Add(200*time.Minute+time.Duration(i)*20*time.Second), 100))
	}
	rg.feed(t, big...)
	fs := rg.n.of(detect.OrderNotional)
	if len(fs) != 1 {
		t.Fatalf("%d findings, want 1", len(fs))
	}
	if ev := fs[0].Evidence; ev.Unit != "USDT per 10m0s" || ev.Observed <= 1200 || ev.Baseline < 500 || ev.Baseline > 800 {
		t.Fatalf("evidence %+v", ev)
	}
}

// TestNewInstrumentAndVenue: first use after warm-up, once.
func TestNewInstrumentAndVenue(t *testing.T) {
	rg := newRig(t, settings(t, "detectors:\n  new_instrument: {warmup_events: 20, warmup_time: 1h}\n"))
	evs := warmupOrders("tok_a", t0)
	eth := order("tok_a", t0.Add(3*time.Hour), 60)
	eth.Instrument = "ETHUSDT"
	eth2 := eth
	eth2.Time, eth2.RequestID = eth.Time.Add(time.Hour), reqID()
	kr := read("tok_a", "10.0.0.1", t0.Add(5*time.Hour))
	kr.Venue = "kraken"
	rg.feed(t, append(evs, eth, eth2, kr)...)
	fs := rg.n.of(detect.NewInstrument)
	if len(fs) != 2 || fs[0].Evidence.Item != "instrument binance/ETHUSDT" || fs[1].Evidence.Item != "venue kraken" {
		t.Fatalf("findings %+v", fs)
	}
	// During warm-up a new instrument is learned silently.
	rg2 := newRig(t, settings(t, ""))
	rg2.feed(t, eth)
	if fs := rg2.n.of(detect.NewInstrument); len(fs) != 0 {
		t.Fatalf("reported during warm-up: %+v", fs)
	}
}

// TestOffHours: hour-of-week profile in the configured time zone.
func TestOffHours(t *testing.T) {
	london, _ := time.LoadLocation("Europe/London")
	// Orders Monday to Friday, 09:00-10:00 London time, in January (GMT),
	// two weeks.
	learn := func() []audit.Event {
		var evs []audit.Event
		for day := 0; day < 14; day++ {
			d := time.Date(2026, 1, 5+day, 9, 0, 0, 0, london)
			if d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
				continue
			}
			for i := range 10 {
				evs = append(evs, order("tok_a", d.Add(time.Duration(i)*5*time.Minute), 60))
			}
		}
		return evs
	}
	for _, tc := range []struct {
		name, zone string
		at         time.Time
		want       int
	}{
		{"usual hour", "Europe/London", time.Date(2026, 1, 21, 9, 30, 0, 0, london), 0},
		{"neighbouring hour", "Europe/London", time.Date(2026, 1, 21, 10, 30, 0, 0, london), 0},
		{"Sunday 03:00", "Europe/London", time.Date(2026, 1, 25, 3, 0, 0, 0, london), 1},
		// In July (BST, UTC+1) 11:30 London is 10:30 UTC: two hours from
		// the learned 09:00 London slot, but next to 09:00 UTC.
		{"summer 11:30 London, zone London", "Europe/London", time.Date(2026, 7, 8, 11, 30, 0, 0, london), 1},
		{"summer 11:30 London, zone UTC", "UTC", time.Date(2026, 7, 8, 11, 30, 0, 0, london), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, settings(t, fmt.Sprintf("time_zone: %s\ndetectors:\n  off_hours: {warmup_events: 50, warmup_time: 168h}\n", tc.zone)))
			rg.feed(t, append(learn(), order("tok_a", tc.at, 60))...)
			fs := rg.n.of(detect.OffHours)
			if len(fs) != tc.want {
				t.Fatalf("%d off_hours findings, want %d: %+v", len(fs), tc.want, fs)
			}
			if tc.want > 0 && !strings.HasSuffix(fs[0].Evidence.Item, tc.zone) {
				t.Errorf("item %q does not name the zone", fs[0].Evidence.Item)
			}
		})
	}
}

// TestSources: a new source address after warm-up, and one token used
// from two addresses at once.
func TestSources(t *testing.T) {
	const yaml = "detectors:\n  new_source: {warmup_events: 10, warmup_time: 10m}\n  concurrent_sources: {window: 10s}\n"
	warmupReads := func() []audit.Event {
		var evs []audit.Event
		for i := range 20 {
			evs = append(evs, read("tok_a", "10.0.0.1", t0.Add(time.Duration(i)*time.Minute)))
		}
		return evs
	}
	later := t0.Add(time.Hour)
	refused := read("tok_a", "203.0.113.7", later)
	refused.Decision, refused.Rule, refused.Status, refused.Upstream = audit.Deny, "token.source", 403, 0
	for _, tc := range []struct {
		name         string
		stream       []audit.Event
		newSrc, conc int
	}{
		{"same source", append(warmupReads(), read("tok_a", "10.0.0.1", later)), 0, 0},
		{"new source, later", append(warmupReads(), read("tok_a", "10.0.0.2", later), read("tok_a", "10.0.0.2", later.Add(time.Hour))), 1, 0},
		{"new source refused by the token's CIDRs", append(warmupReads(), refused), 1, 0},
		{"two sources 2s apart", append(warmupReads(), read("tok_a", "10.0.0.1", later), read("tok_a", "10.0.0.2", later.Add(2*time.Second))), 1, 1},
		{"two sources 30s apart", append(warmupReads(), read("tok_a", "10.0.0.1", later), read("tok_a", "10.0.0.2", later.Add(30*time.Second))), 1, 0},
		{"during warm-up", []audit.Event{read("tok_a", "10.0.0.1", t0), read("tok_a", "10.0.0.2", t0.Add(time.Minute))}, 0, 0},
		{"other tokens' sources do not count", append(warmupReads(), read("tok_b", "10.0.0.2", later), read("tok_a", "10.0.0.1", later.Add(time.Second))), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, settings(t, yaml))
			rg.feed(t, tc.stream...)
			ns, cs := rg.n.of(detect.NewSource), rg.n.of(detect.ConcurrentSources)
			if len(ns) != tc.newSrc || len(cs) != tc.conc {
				t.Fatalf("new_source %d (want %d), concurrent_sources %d (want %d): %+v", len(ns), tc.newSrc, len(cs), tc.conc, rg.n.all())
			}
			for _, f := range ns {
				if f.Source == "" || f.Evidence.Known != 1 {
					t.Errorf("finding %+v", f)
				}
			}
		})
	}
}

// TestBursts: threshold detectors over sliding windows.
func TestBursts(t *testing.T) {
	const yaml = `detectors:
  auth_failures: {threshold: 10, total_threshold: 30, window: 1m}
  policy_denials: {threshold: 5, window: 1m}
  venue_errors: {threshold: 4, window: 1m}
  rate_limited: {threshold: 3, window: 1m}
`
	authFail := func(src string, t time.Time) audit.Event {
		return audit.Event{Time: t, RequestID: reqID(), Source: src, Venue: "binance", Method: "GET", Path: "/api/v3/account",
			Decision: audit.Deny, Rule: "token.unknown", Status: 401}
	}
	many := func(n int, gap time.Duration, mk func(i int, t time.Time) audit.Event) []audit.Event {
		var evs []audit.Event
		for i := range n {
			evs = append(evs, mk(i, t0.Add(time.Duration(i)*gap)))
		}
		return evs
	}
	deny := func(_ int, t time.Time) audit.Event {
		e := read("tok_a", "10.0.0.1", t)
		e.Decision, e.Rule, e.Status, e.Upstream = audit.Deny, "policy.p.operation", 403, 0
		return e
	}
	for _, tc := range []struct {
		name     string
		stream   []audit.Event
		detector string
		want     int
	}{
		{"10 auth failures from one source in a minute", many(10, 5*time.Second, func(_ int, t time.Time) audit.Event { return authFail("198.51.100.1", t) }), detect.AuthFailures, 1},
		{"9 auth failures", many(9, 5*time.Second, func(_ int, t time.Time) audit.Event { return authFail("198.51.100.1", t) }), detect.AuthFailures, 0},
		{"10 auth failures over 10 minutes", many(10, time.Minute, func(_ int, t time.Time) audit.Event { return authFail("198.51.100.1", t) }), detect.AuthFailures, 0},
		{"30 failures from 30 sources", many(30, time.Second, func(i int, t time.Time) audit.Event { return authFail(fmt.Sprintf("198.51.100.%d", i), t) }), detect.AuthFailures, 1},
		{"known token refused by its CIDRs counts", many(10, time.Second, func(_ int, t time.Time) audit.Event {
			e := authFail("198.51.100.1", t)
			e.TokenID, e.Rule, e.Status = "tok_a", "token.source", 403
			return e
		}), detect.AuthFailures, 1},
		{"tokens the kill switch refuses are no auth failures", many(20, time.Second, func(_ int, t time.Time) audit.Event {
			e := authFail("198.51.100.1", t)
			e.TokenID, e.Rule, e.Status = "tok_a", "token.killed", 403
			return e
		}), detect.AuthFailures, 0},
		{"5 policy denials", many(5, time.Second, deny), detect.PolicyDenials, 1},
		{"scope denials count as denials", many(5, time.Second, func(i int, t time.Time) audit.Event {
			e := deny(i, t)
			e.Rule = "token.scope"
			return e
		}), detect.PolicyDenials, 1},
		{"4 venue 5xx", many(4, time.Second, func(_ int, t time.Time) audit.Event {
			e := read("tok_a", "10.0.0.1", t)
			e.Status, e.Upstream = 503, 503
			return e
		}), detect.VenueErrors, 1},
		{"unreachable venue (502, nothing upstream)", many(4, time.Second, func(_ int, t time.Time) audit.Event {
			e := read("tok_a", "10.0.0.1", t)
			e.Decision, e.Status, e.Upstream = audit.Error, 502, 0
			return e
		}), detect.VenueErrors, 1},
		{"venue 4xx are not venue errors", many(10, time.Second, func(_ int, t time.Time) audit.Event {
			e := read("tok_a", "10.0.0.1", t)
			e.Status, e.Upstream = 400, 400
			return e
		}), detect.VenueErrors, 0},
		{"3 429s", many(3, time.Second, func(i int, t time.Time) audit.Event {
			e := read("tok_a", "10.0.0.1", t)
			if i == 0 {
				e.Decision, e.Rule, e.Status, e.Upstream = audit.Deny, "venue.rate_limit", 429, 0
			} else {
				e.Status, e.Upstream = 429, 429
			}
			return e
		}), detect.RateLimited, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, settings(t, yaml))
			rg.feed(t, tc.stream...)
			fs := rg.n.of(tc.detector)
			if len(fs) != tc.want {
				t.Fatalf("%d %s findings, want %d: %+v", len(fs), tc.detector, tc.want, rg.n.all())
			}
			for _, f := range fs {
				if f.Evidence.Threshold == 0 || f.Evidence.Observed < f.Evidence.Threshold || len(f.Evidence.Requests) == 0 {
					t.Errorf("evidence %+v", f.Evidence)
				}
			}
		})
	}
}

// TestSensitiveOperations: every withdrawal or key-management attempt,
// allowed or denied.
func TestSensitiveOperations(t *testing.T) {
	rg := newRig(t, settings(t, ""))
	w := read("tok_a", "10.0.0.1", t0)
	w.Operation, w.Decision, w.Rule, w.Status, w.Upstream = "wallet.withdraw", audit.Deny, "token.scope", 403, 0
	k := read("tok_b", "10.0.0.1", t0)
	k.Operation = "apikey.manage"
	rg.feed(t, w, k, read("tok_c", "10.0.0.1", t0))
	fs := rg.n.of(detect.SensitiveOps)
	if len(fs) != 2 || fs[0].Severity != detect.SeverityCritical || fs[0].Evidence.Item != "wallet.withdraw" || fs[1].TokenID != "tok_b" {
		t.Fatalf("findings %+v", fs)
	}
	if !strings.Contains(fs[0].Summary, "refused") || !strings.Contains(fs[1].Summary, "allowed") {
		t.Fatalf("summaries %q, %q", fs[0].Summary, fs[1].Summary)
	}
}

// TestAdminHours: admin writes at an hour never seen.
func TestAdminHours(t *testing.T) {
	rg := newRig(t, settings(t, "detectors:\n  admin_hours: {warmup_events: 10, warmup_time: 168h}\n"))
	admin := func(t time.Time) audit.Event {
		return audit.Event{Time: t, RequestID: reqID(), Source: "uid:1000", Method: "POST", Path: "/v1/tokens",
			Operation: "admin.tokens.create", Decision: audit.Allow, Status: 200}
	}
	var evs []audit.Event
	for day := range 10 {
		evs = append(evs, admin(t0.Add(time.Duration(day)*24*time.Hour+time.Hour))) // 10:00 daily
	}
	evs = append(evs, admin(t0.Add(10*24*time.Hour+time.Hour+30*time.Minute)), admin(t0.Add(11*24*time.Hour-7*time.Hour))) // 10:30; 02:00
	rg.feed(t, evs...)
	fs := rg.n.of(detect.AdminHours)
	if len(fs) != 1 || fs[0].Subject != "admin" || !strings.Contains(fs[0].Evidence.Item, "02:00") {
		t.Fatalf("findings %+v", fs)
	}
}
