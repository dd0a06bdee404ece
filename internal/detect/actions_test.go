package detect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// withdrawal is a sensitive_operations trigger for tok.
func withdrawal(tok string, t time.Time) audit.Event {
	e := read(tok, "10.0.0.1", t)
	e.Operation, e.Path, e.Method = "wallet.withdraw", "/sapi/v1/capital/withdraw/apply", "POST"
	return e
}

func openDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestActions: each action, its audit record with the evidence, and that
// a flood of findings acts once per target.
func TestActions(t *testing.T) {
	t.Run("freeze once for a flood", func(t *testing.T) {
		rg := newRig(t, settings(t, "cooldown: 1m\ndetectors:\n  sensitive_operations: {actions: [alert, freeze]}\n"))
		var evs []audit.Event
		for i := range 200 {
			evs = append(evs, withdrawal("tok_a", t0.Add(time.Duration(i)*time.Second)))
		}
		rg.feed(t, evs...)
		// The findings come every cooldown (1m) of event time: 4 in 200s;
		// the token is frozen once, then the freeze is in force.
		if got := len(rg.n.of(detect.SensitiveOps)); got != 4 {
			t.Fatalf("%d alerts for 200 attempts in 200s with a 1m cooldown, want 4", got)
		}
		if len(rg.r.freezes) != 1 || rg.r.freezes[0] != "tok_a" {
			t.Fatalf("freezes %v, want one of tok_a", rg.r.freezes)
		}
		var results []string
		for _, e := range rg.rec.all() {
			if e.Operation == "detect.freeze" {
				var ev struct{ Result string }
				_ = json.Unmarshal([]byte(e.Evidence), &ev)
				results = append(results, ev.Result)
			}
		}
		if strings.Join(results, ",") != "done,in_force,in_force,in_force" {
			t.Fatalf("freeze records %v", results)
		}
		if st := rg.d.Stats(); st.Findings != 4 || st.Suppressed != 196 {
			t.Fatalf("stats %+v", st)
		}
		// The next report counts what the cooldown held back.
		if last := rg.n.of(detect.SensitiveOps)[3]; last.Evidence.Suppressed != 59 {
			t.Fatalf("suppressed %d, want 59", last.Evidence.Suppressed)
		}
		// The alert says what else is done about it.
		if a := rg.n.of(detect.SensitiveOps)[0].Actions; strings.Join(a, ",") != "alert,freeze" {
			t.Fatalf("finding's actions %v", a)
		}
		// Operators see the findings, newest first, with what was done.
		recent := rg.d.Recent(time.Time{})
		if len(recent) != 4 || !recent[0].Time.After(recent[3].Time) || recent[0].Detector != detect.SensitiveOps ||
			recent[0].TokenID != "tok_a" || recent[0].Severity != detect.SeverityCritical {
			t.Fatalf("recent %+v", recent)
		}
		res := func(v detect.FindingView) string {
			var out []string
			for _, a := range v.Actions {
				out = append(out, a.Action+"="+a.Result)
			}
			return strings.Join(out, ",")
		}
		if res(recent[3]) != "alert=done,freeze=done" || res(recent[0]) != "alert=done,freeze=in_force" {
			t.Fatalf("recent actions %q, %q", res(recent[3]), res(recent[0]))
		}
		if got := rg.d.Recent(recent[1].Time); len(got) != 2 {
			t.Fatalf("recent since the second newest: %d", len(got))
		}
	})

	t.Run("audit record carries the evidence", func(t *testing.T) {
		rg := newRig(t, settings(t, "detectors:\n  order_size: {factor: 5, warmup_events: 20, warmup_time: 1h, actions: [alert, throttle]}\n"))
		big := order("tok_a", t0.Add(3*time.Hour), 600)
		big.Source = "192.0.2.44"
		rg.feed(t, append(warmupOrders("tok_a", t0), big)...)
		var recs []audit.Event
		for _, r := range rg.rec.all() {
			if r.Rule == "detect.order_size" {
				recs = append(recs, r)
			}
		}
		if len(recs) != 2 || recs[0].Operation != "detect.alert" || recs[1].Operation != "detect.throttle" {
			t.Fatalf("records %+v", recs)
		}
		for _, r := range recs {
			if r.Rule != "detect.order_size" || r.Decision != detect.SeverityCritical || r.TokenID != "tok_a" || r.Source != "192.0.2.44" ||
				!strings.HasPrefix(r.RequestID, "fnd_") || r.Notional != big.Notional || r.Instrument != "BTCUSDT" {
				t.Errorf("record %+v", r)
			}
			var ev struct {
				Finding, Detector, Action, Result, Target, Until string
				Evidence                                         detect.Evidence
			}
			if err := json.Unmarshal([]byte(r.Evidence), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Finding != r.RequestID || ev.Detector != "order_size" || ev.Result != "done" || ev.Evidence.Observed != 600 ||
				ev.Evidence.Baseline == 0 || ev.Evidence.Requests[0] != big.RequestID {
				t.Errorf("evidence %s", r.Evidence)
			}
			if strings.Contains(r.Evidence, "192.0.2.44") {
				t.Errorf("evidence names the source address: %s", r.Evidence)
			}
		}
	})

	t.Run("throttle limits the token, then ends", func(t *testing.T) {
		rg := newRig(t, settings(t, "throttle: {requests: 2, per: 1m, duration: 10m}\ndetectors:\n  sensitive_operations: {actions: [throttle]}\n"))
		rg.feed(t, withdrawal("tok_a", t0))
		now := rg.clk.Now()
		var refused int
		var wait time.Duration
		for range 5 {
			if rule, w := rg.d.Admit("tok_a", "binance", now); rule == detect.RuleThrottle {
				refused++
				wait = w
			} else if rule != "" {
				t.Fatalf("rule %q", rule)
			}
		}
		if refused != 3 || wait < time.Second || wait > 30*time.Second {
			t.Fatalf("%d of 5 refused (wait %s), want 3 (burst 2)", refused, wait)
		}
		if rule, _ := rg.d.Admit("tok_b", "binance", now); rule != "" {
			t.Fatalf("another token throttled: %q", rule)
		}
		if rule, _ := rg.d.Admit("tok_a", "binance", now.Add(31*time.Second)); rule != "" {
			t.Fatalf("no refill after 31s at 2/min: %q", rule)
		}
		// Another finding while throttled does not extend or stack it.
		rg.clk.Advance(time.Minute)
		rg.feed(t, withdrawal("tok_a", t0.Add(11*time.Minute)))
		if hs := rg.d.Holds(); len(hs) != 1 || !hs[0].Until.Equal(now.Add(10*time.Minute)) {
			t.Fatalf("holds %+v", hs)
		}
		rg.clk.Set(now.Add(10 * time.Minute))
		if rule, _ := rg.d.Admit("tok_a", "binance", rg.clk.Now()); rule != "" {
			t.Fatalf("throttle still in force after its duration: %q", rule)
		}
	})

	t.Run("freeze venue and credential", func(t *testing.T) {
		rg := newRig(t, settings(t, "detectors:\n  venue_errors: {threshold: 2, actions: [freeze_venue, freeze_credential]}\n", "binance", "kraken", "binance-alt"))
		e := read("tok_a", "10.0.0.1", t0)
		e.Status, e.Upstream = 503, 503
		e2 := e
		e2.RequestID, e2.Time = reqID(), t0.Add(time.Second)
		rg.feed(t, e, e2)
		now := rg.clk.Now()
		if rule, _ := rg.d.Admit("tok_a", "binance", now); rule != detect.RuleFrozenVenue {
			t.Fatalf("binance: %q", rule)
		}
		if rule, _ := rg.d.Admit("tok_a", "kraken", now); rule != "" {
			t.Fatalf("kraken: %q", rule)
		}
		if err := rg.d.Release(context.Background(), detect.HoldFreezeVenue, "binance"); err != nil {
			t.Fatal(err)
		}
		// The credential freeze holds the venue still.
		if rule, _ := rg.d.Admit("tok_a", "binance", now); rule != detect.RuleFrozenCredential {
			t.Fatalf("binance after the venue release: %q", rule)
		}
		if err := rg.d.Release(context.Background(), detect.HoldFreezeCredential, "binance-cred"); err != nil {
			t.Fatal(err)
		}
		if rule, _ := rg.d.Admit("tok_a", "binance", now); rule != "" {
			t.Fatalf("binance after both releases: %q", rule)
		}
		if err := rg.d.Release(context.Background(), detect.HoldFreezeCredential, "binance-cred"); !errors.Is(err, detect.ErrNoHold) {
			t.Fatalf("second release: %v", err)
		}
	})

	t.Run("actions that do not apply are skipped", func(t *testing.T) {
		rg := newRig(t, settings(t, "actions: {warning: [alert, throttle, freeze, freeze_venue]}\ndetectors:\n  auth_failures: {threshold: 2}\n"))
		f := audit.Event{Time: t0, Source: "198.51.100.1", Rule: "token.unknown", Decision: audit.Deny, Status: 401}
		f2 := f
		f2.Time = t0.Add(time.Second)
		rg.feed(t, f, f2)
		var got []string
		for _, r := range rg.rec.all() {
			var ev struct{ Action, Result string }
			_ = json.Unmarshal([]byte(r.Evidence), &ev)
			got = append(got, ev.Action+"="+ev.Result)
		}
		if strings.Join(got, ",") != "alert=done,throttle=skipped,freeze=skipped,freeze_venue=skipped" {
			t.Fatalf("actions %v", got)
		}
		if len(rg.r.freezes) != 0 || len(rg.d.Holds()) != 0 {
			t.Fatal("an action was taken without a target")
		}
	})

	t.Run("kill once, failure recorded", func(t *testing.T) {
		rg := newRig(t, settings(t, "detectors:\n  sensitive_operations: {actions: [kill]}\n"))
		rg.feed(t, withdrawal("tok_a", t0), withdrawal("tok_b", t0))
		if rg.r.kills != 1 {
			t.Fatalf("kill switch tripped %d times, want 1", rg.r.kills)
		}
		if recs := rg.rec.all(); len(recs) != 2 || !strings.Contains(recs[0].Evidence, `"result":"done"`) ||
			!strings.Contains(recs[1].Evidence, `"result":"in_force"`) {
			t.Fatalf("records %+v", recs)
		}
		// A switch engaged by someone else is recorded as in force.
		rg1 := newRig(t, settings(t, "detectors:\n  sensitive_operations: {actions: [kill]}\n"))
		rg1.r.kills = 1
		rg1.feed(t, withdrawal("tok_a", t0))
		if recs := rg1.rec.all(); len(recs) != 1 || !strings.Contains(recs[0].Evidence, `"result":"in_force"`) || rg1.r.kills != 2 {
			t.Fatalf("records %+v", recs)
		}
		rg2 := newRig(t, settings(t, "detectors:\n  sensitive_operations: {actions: [freeze]}\n"))
		rg2.r.fail = errors.New("store unavailable")
		rg2.feed(t, withdrawal("tok_a", t0))
		recs := rg2.rec.all()
		if len(recs) != 1 || recs[0].Error == "" || !strings.Contains(recs[0].Evidence, `"result":"failed"`) || rg2.d.Stats().Failed != 1 {
			t.Fatalf("records %+v", recs)
		}
	})

	t.Run("recent findings are bounded", func(t *testing.T) {
		rg := newRig(t, settings(t, "max_actions_per_minute: 1000\n"))
		var evs []audit.Event
		for i := range 100 {
			evs = append(evs, withdrawal(fmt.Sprintf("tok_%03d", i), t0.Add(time.Duration(i)*time.Millisecond)))
		}
		rg.feed(t, evs...)
		recent := rg.d.Recent(time.Time{})
		if len(recent) != 64 || recent[0].TokenID != "tok_099" || recent[63].TokenID != "tok_036" {
			t.Fatalf("%d recent, newest %s, oldest %s", len(recent), recent[0].TokenID, recent[len(recent)-1].TokenID)
		}
	})

	t.Run("per-minute cap", func(t *testing.T) {
		rg := newRig(t, settings(t, "max_actions_per_minute: 5\n"))
		var evs []audit.Event
		for i := range 20 {
			evs = append(evs, withdrawal("tok_"+string(rune('a'+i)), t0))
		}
		rg.feed(t, evs...)
		if n := len(rg.n.all()); n != 5 {
			t.Fatalf("%d alerts in one minute, want 5", n)
		}
		rg.clk.Advance(time.Minute)
		rg.feed(t, withdrawal("tok_z", t0))
		if n := len(rg.n.all()); n != 6 {
			t.Fatalf("%d alerts after a minute, want 6", n)
		}
	})

	t.Run("holds survive a restart", func(t *testing.T) {
		db := openDB(t, filepath.Join(t.TempDir(), "keystile.db"))
		s := settings(t, "detectors:\n  sensitive_operations: {actions: [throttle, freeze_venue]}\n", "binance")
		rg := newRig(t, s, db.Detect())
		rg.feed(t, withdrawal("tok_a", t0))
		if err := rg.d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		rg2 := newRig(t, s, db.Detect())
		if hs := rg2.d.Holds(); len(hs) != 2 || hs[0].Kind != detect.HoldFreezeVenue || hs[1].Kind != detect.HoldThrottle {
			t.Fatalf("holds after restart %+v", hs)
		}
		if rule, _ := rg2.d.Admit("tok_x", "binance", rg2.clk.Now()); rule != detect.RuleFrozenVenue {
			t.Fatalf("rule %q", rule)
		}
	})
}
