package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// actionTimeout bounds one action (a store write, the kill switch).
const actionTimeout = 10 * time.Second

// Results of an action, in its detect record's evidence.
const (
	resultDone    = "done"     // carried out
	resultInForce = "in_force" // already in force (idempotent repeat)
	resultSkipped = "skipped"  // does not apply to this finding
	resultFailed  = "failed"
)

// record is the evidence of a detect audit record.
type record struct {
	Finding  string   `json:"finding"`
	Detector string   `json:"detector"`
	Severity string   `json:"severity"`
	Subject  string   `json:"subject"`
	Summary  string   `json:"summary"`
	Action   string   `json:"action,omitempty"`
	Target   string   `json:"target,omitempty"`
	Result   string   `json:"result,omitempty"`
	Until    string   `json:"until,omitempty"`
	Evidence Evidence `json:"evidence"`
}

// report applies the cooldown and the per-minute cap to a finding, then
// takes its detector's actions and writes one detect record per action
// (or one "detect.finding" record when it has none).
func (d *Detector) report(s *Settings, f Finding) {
	ds, _ := s.on(f.Detector)
	key := f.Detector + "|" + f.Subject
	if c := d.lastFinding[key]; c != nil && f.Time.Sub(c.at) < s.Cooldown && f.Time.Sub(c.at) > -s.Cooldown {
		c.suppressed++
		d.suppressed.Add(1)
		return
	}
	minute := d.now().Unix() / 60
	if minute != d.actionWin {
		d.actionWin, d.actionCount = minute, 0
	}
	if d.actionCount >= s.MaxActionsPerMinute {
		d.suppressed.Add(1)
		if d.actionCount == s.MaxActionsPerMinute {
			d.log.Warn("detect: more findings this minute than detect.max_actions_per_minute; the rest are counted, not acted on",
				"limit", s.MaxActionsPerMinute)
			d.actionCount++
		}
		return
	}
	d.actionCount++
	if c := d.lastFinding[key]; c != nil {
		f.Evidence.Suppressed = c.suppressed
	}
	if len(d.lastFinding) >= maxCooldownKeys {
		for k, c := range d.lastFinding {
			if f.Time.Sub(c.at) >= s.Cooldown {
				delete(d.lastFinding, k)
			}
		}
		if len(d.lastFinding) >= maxCooldownKeys {
			clear(d.lastFinding)
		}
	}
	d.lastFinding[key] = &cooldown{at: f.Time}
	f.ID, f.Severity, f.Actions = newID(), ds.Severity, ds.Actions
	d.remember(f)
	defer d.findings.Add(1) // counted once acted on
	d.log.LogAttrs(context.Background(), levelOf(f.Severity), "detect: finding",
		slog.String("finding", f.ID), slog.String("detector", f.Detector), slog.String("severity", f.Severity),
		slog.String("subject", f.Subject), slog.String("summary", f.Summary))
	if len(ds.Actions) == 0 {
		d.audit(f, "finding", "", "", nil, "")
		return
	}
	for _, a := range ds.Actions {
		d.act(s, f, a)
	}
}

func levelOf(sev string) slog.Level {
	switch sev {
	case SeverityCritical:
		return slog.LevelError
	case SeverityWarning:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// act carries out one action for f and records it. An action on a target
// already acted on within the cooldown is recorded as in force, not
// repeated.
func (d *Detector) act(s *Settings, f Finding, action string) {
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	reason := fmt.Sprintf("%s %s: %s", f.Detector, f.ID, f.Summary)
	var target, until string
	var err error
	result := resultDone
	switch action {
	case ActionAlert:
		target = f.Subject
		if d.o.Notifier != nil {
			d.o.Notifier.Notify(ctx, f)
		} else {
			err = errors.New("no notifier configured")
		}
	case ActionThrottle:
		target = f.TokenID
		if target == "" {
			result = resultSkipped
			break
		}
		if h, ok := d.hold(HoldThrottle, target); ok && d.now().Before(h.Until) {
			result, until = resultInForce, h.Until.UTC().Format(time.RFC3339)
			break
		}
		now := d.now().UTC()
		h := Hold{Kind: HoldThrottle, Subject: target, Since: now, Until: now.Add(s.Throttle.Duration),
			Requests: s.Throttle.Requests, Per: s.Throttle.Per, Detector: f.Detector, Finding: f.ID}
		until = h.Until.Format(time.RFC3339)
		err = d.putHold(ctx, h)
	case ActionFreeze:
		target = f.TokenID
		if target == "" {
			result = resultSkipped
			break
		}
		if d.recent(s, action, target) {
			result = resultInForce
			break
		}
		if d.o.Responder == nil {
			err = errors.New("no responder configured")
			break
		}
		if err = d.o.Responder.FreezeToken(ctx, target, reason); err == nil {
			d.mark(action, target)
		}
	case ActionFreezeVenue, ActionFreezeCredential:
		kind, subject := HoldFreezeVenue, f.Venue
		if action == ActionFreezeCredential {
			kind, subject = HoldFreezeCredential, s.Credentials[f.Venue]
		}
		target = subject
		if subject == "" {
			result = resultSkipped
			break
		}
		if _, ok := d.hold(kind, subject); ok {
			result = resultInForce
			break
		}
		err = d.putHold(ctx, Hold{Kind: kind, Subject: subject, Since: d.now().UTC(), Detector: f.Detector, Finding: f.ID})
	case ActionKill:
		target = "all tokens"
		if d.recent(s, action, "") {
			result = resultInForce
			break
		}
		if d.o.Responder == nil {
			err = errors.New("no responder configured")
			break
		}
		var engaged bool
		if engaged, err = d.o.Responder.Kill(ctx, f, reason); err == nil {
			d.mark(action, "")
			if !engaged {
				result = resultInForce
			}
		}
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		result = resultFailed
		d.failed.Add(1)
		d.log.Error("detect: action failed", "finding", f.ID, "action", action, "target", target, "err", err)
	} else if result == resultDone {
		d.actions.Add(1)
		if action != ActionAlert {
			d.log.Warn("detect: action taken", "finding", f.ID, "detector", f.Detector, "action", action, "target", target)
		}
	}
	d.noteAction(f.ID, ActionView{Action: action, Target: target, Result: result, Error: errText(err)})
	d.audit(f, action, target, result, err, until)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recent reports whether action was carried out on target within the
// cooldown.
func (d *Detector) recent(s *Settings, action, target string) bool {
	at, ok := d.lastAction[action+"|"+target]
	return ok && d.now().Sub(at) < s.Cooldown
}

// mark notes that action was carried out on target now.
func (d *Detector) mark(action, target string) {
	if len(d.lastAction) >= maxCooldownKeys {
		clear(d.lastAction)
	}
	d.lastAction[action+"|"+target] = d.now()
}

// audit writes f's detect record for one action ("finding": none).
func (d *Detector) audit(f Finding, action, target, result string, actErr error, until string) {
	ev, err := json.Marshal(record{Finding: f.ID, Detector: f.Detector, Severity: f.Severity, Subject: f.Subject,
		Summary: f.Summary, Action: action, Target: target, Result: result, Until: until, Evidence: f.Evidence})
	if err != nil {
		d.log.Error("detect: encode evidence", "finding", f.ID, "err", err)
		return
	}
	if d.o.Recorder == nil {
		return
	}
	t := f.trigger
	e := audit.Event{Time: d.now(), RequestID: f.ID, TokenID: f.TokenID, Source: f.Source, Venue: f.Venue,
		Operation: "detect." + action, Decision: f.Severity, Rule: rule(f.Detector),
		Instrument: t.Instrument, Side: t.Side, OrderType: t.OrderType, Quantity: t.Quantity, Price: t.Price, Notional: t.Notional,
		ClientOrderID: t.ClientOrderID, Evidence: string(ev)}
	if actErr != nil {
		e.Error = actErr.Error()
	}
	d.o.Recorder.Detect(context.Background(), e)
}
