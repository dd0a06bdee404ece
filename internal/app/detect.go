package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// purposeDetectSource keys the hashes under which the detector learns
// source addresses (derived from the vault, so it survives restarts and
// rekeys).
const purposeDetectSource = "detect.source.v1"

// openDetector builds the anomaly detector on the store, fed by the
// gateway's and the admin API's events, writing its findings and actions
// to the audit log, its alerts to the alert dispatcher, and its kill
// action to the kill switch (both must be open).
func (s *Server) openDetector(ctx context.Context, v *vault.Vault, db Stores, cfg *config.Config) error {
	set, err := detect.Compile(cfg)
	if err != nil {
		return err
	}
	key, err := v.DeriveKey(purposeDetectSource)
	if err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	defer key.Wipe()
	s.detect, err = detect.New(ctx, detect.Options{
		Settings: set, Profiles: db.Detect(), Holds: db.Detect(), SourceKey: append([]byte(nil), key.Reveal()...),
		Notifier: alertNotifier{alerts: s.alerts, log: s.log}, Responder: responder{tokens: s.tokens, kill: s.kill, log: s.log},
		Recorder: s.audit,
		Logger:   s.log,
	})
	return err
}

// alertNotifier is the detector's alert action: each finding becomes an
// alert.Alert for the dispatcher (every configured sink, deduplicated and
// rate-limited per detector and subject there) and a log line. Notify
// never blocks: Dispatcher.Send only queues, and drops (counted, reported
// to the sinks) when its queue is full. Text the bot supplied (instrument
// names, operations) is scrubbed, stripped of control characters and
// bounded by Send, and escaped by each sink for its own markup.
type alertNotifier struct {
	alerts *alert.Dispatcher // nil: log only
	log    *slog.Logger
}

// Notify implements detect.Notifier.
func (n alertNotifier) Notify(ctx context.Context, f detect.Finding) {
	lvl := slog.LevelWarn
	if f.Severity == detect.SeverityCritical {
		lvl = slog.LevelError
	}
	queued := false
	if n.alerts != nil {
		queued = n.alerts.Send(findingAlert(f))
	}
	n.log.LogAttrs(ctx, lvl, "detect: alert", slog.String("finding", f.ID), slog.String("detector", f.Detector),
		slog.String("severity", f.Severity), slog.String("subject", f.Subject), slog.String("token_id", f.TokenID),
		slog.String("venue", f.Venue), slog.String("source", f.Source), slog.String("summary", f.Summary),
		slog.Float64("observed", f.Evidence.Observed), slog.Float64("baseline", f.Evidence.Baseline),
		slog.Float64("threshold", f.Evidence.Threshold), slog.Any("requests", f.Evidence.Requests),
		slog.Bool("queued_for_sinks", queued))
}

// alertSeverity maps a detector severity onto the alert scale: info
// stays info, warning is medium, critical is critical (sinks filter on
// min_severity).
func alertSeverity(s string) alert.Severity {
	switch s {
	case detect.SeverityInfo:
		return alert.SeverityInfo
	case detect.SeverityWarning:
		return alert.SeverityMedium
	case detect.SeverityCritical:
		return alert.SeverityCritical
	}
	return alert.SeverityHigh // unknown: never silenced
}

// findingAlert maps a finding to an alert: detector "detect.<name>", the
// token and venue as the subject, the evidence as fields (the source
// address included: an operator needs it; alerts are not the audit log),
// and a suggested command.
func findingAlert(f detect.Finding) alert.Alert {
	a := alert.Alert{Time: f.Time, Detector: "detect." + f.Detector, Severity: alertSeverity(f.Severity),
		Subject: alert.Subject{Token: f.TokenID, Venue: f.Venue}, Summary: f.Summary, Action: suggestedAction(f)}
	add := func(k, v string) {
		if v != "" {
			a.Evidence = append(a.Evidence, alert.Field{Key: k, Value: v})
		}
	}
	num := func(k string, v float64) {
		if v != 0 {
			add(k, strconv.FormatFloat(v, 'g', 6, 64))
		}
	}
	e := f.Evidence
	add("finding", f.ID)
	add("detector_severity", f.Severity)
	num("observed", e.Observed)
	num("usual", e.Baseline)
	num("threshold", e.Threshold)
	num("factor", e.Factor)
	add("unit", e.Unit)
	if e.Observations > 0 {
		add("learned_from", strconv.FormatInt(e.Observations, 10))
	}
	add("window", e.Window)
	add("item", e.Item)
	if e.Known > 0 {
		add("known", strconv.Itoa(e.Known))
	}
	add("source", f.Source)
	add("requests", strings.Join(e.Requests, " "))
	if e.Suppressed > 0 {
		add("repeats_held_back", strconv.Itoa(e.Suppressed))
	}
	add("actions", strings.Join(f.Actions, ", "))
	return a
}

// suggestedAction is the command an operator would run next.
func suggestedAction(f detect.Finding) string {
	switch {
	case f.TokenID != "":
		return fmt.Sprintf("keystile detect show %s; if unexpected: keystile token freeze %s (or keystile panic --cancel-orders --reason ...)", f.TokenID, f.TokenID)
	case strings.HasPrefix(f.Subject, "venue:"):
		return fmt.Sprintf("check venue %s; if its credential is at risk: keystile panic --venue %s --reason ...", f.Venue, f.Venue)
	case f.Subject == "admin":
		return "keystile audit query --since 1h --kind outcome; if these admin writes are not yours: keystile panic --reason ... and rotate admin access"
	case f.Detector == detect.QueueDrops:
		return "keystile detect status; raise detect.queue_size if drops continue"
	}
	return "keystile audit query --since 1h --decision deny; block the source address if it is not yours"
}

// responder carries out the detector's containment: a token freeze
// through the token service, kill through the kill switch (every token
// refused until an admin clears it with keystile panic clear).
type responder struct {
	tokens *token.Service
	kill   *killswitch.Switch
	log    *slog.Logger
}

// FreezeToken implements detect.Responder.
func (r responder) FreezeToken(ctx context.Context, id, reason string) error {
	if err := r.tokens.Freeze(ctx, token.ID(id)); err != nil {
		return err
	}
	r.log.Warn("detect: token frozen", "token_id", id, "reason", reason)
	return nil
}

// Kill implements detect.Responder: it engages the kill switch for every
// token (scope all), as the rule detect.<detector> with actor "detect".
func (r responder) Kill(ctx context.Context, f detect.Finding, reason string) (bool, error) {
	if r.kill == nil {
		return false, errors.New("kill: no kill switch")
	}
	res, err := r.kill.Engage(ctx, killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: "detect." + f.Detector,
		Actor: "detect", Reason: tripReason(reason), Token: token.ID(f.TokenID), RequestID: f.ID,
		Detail: map[string]any{"finding": f.ID, "detector": f.Detector, "severity": f.Severity}})
	if err != nil {
		return false, fmt.Errorf("kill: %w", err)
	}
	if !res.Persisted {
		r.log.Error("detect: kill switch engaged on this server only; it is written at the next refresh", "trip", res.Trip.ID)
	}
	return res.New, nil
}

// tripReason makes a finding's reason acceptable to the kill switch
// (printable UTF-8, at most killswitch.MaxReason bytes): the summary may
// quote what a bot sent (an instrument name), and a control character or
// a long name must not stop the switch from engaging.
func tripReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > killswitch.MaxReason {
		cut := killswitch.MaxReason - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if strings.TrimSpace(s) == "" {
		return "detector finding"
	}
	return s
}

// adminEvents sends each audited admin write to the audit log, the
// structured log and the detector (not to the gateway's metrics).
type adminEvents struct {
	log    AuditLog
	text   audit.Sink
	detect audit.Sink
}

// Record implements audit.Sink.
func (e adminEvents) Record(ctx context.Context, ev audit.Event) {
	if e.log != nil {
		e.log.Record(ctx, ev)
	}
	e.text.Record(ctx, ev)
	if e.detect != nil {
		e.detect.Record(ctx, ev)
	}
}

var (
	_ detect.Notifier  = alertNotifier{}
	_ detect.Responder = responder{}
	_ detect.Recorder  = AuditLog(nil)
	_ gateway.Guard    = (*detect.Detector)(nil)
	_ audit.Sink       = adminEvents{}
)
