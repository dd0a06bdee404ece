package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// purposeDetectSource keys the hashes under which the detector learns
// source addresses (derived from the vault, so it survives restarts and
// rekeys).
const purposeDetectSource = "detect.source.v1"

// openDetector builds the anomaly detector on the store, fed by the
// gateway's and the admin API's events, writing its findings and actions
// to the audit log.
func (s *Server) openDetector(ctx context.Context, v *vault.Vault, db *sqlite.DB, cfg *config.Config) error {
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
		Notifier: logNotifier{log: s.log}, Responder: tokenResponder{tokens: s.tokens, log: s.log}, Recorder: s.audit,
		Logger: s.log,
	})
	return err
}

// logNotifier is the alert action until the alert package's dispatcher is
// connected: it logs each finding (at error level for critical ones).
// Notify never blocks.
type logNotifier struct{ log *slog.Logger }

// Notify implements detect.Notifier.
func (n logNotifier) Notify(ctx context.Context, f detect.Finding) {
	lvl := slog.LevelWarn
	if f.Severity == detect.SeverityCritical {
		lvl = slog.LevelError
	}
	n.log.LogAttrs(ctx, lvl, "detect: alert", slog.String("finding", f.ID), slog.String("detector", f.Detector),
		slog.String("severity", f.Severity), slog.String("subject", f.Subject), slog.String("token_id", f.TokenID),
		slog.String("venue", f.Venue), slog.String("source", f.Source), slog.String("summary", f.Summary),
		slog.Float64("observed", f.Evidence.Observed), slog.Float64("baseline", f.Evidence.Baseline),
		slog.Float64("threshold", f.Evidence.Threshold), slog.Any("requests", f.Evidence.Requests))
}

// tokenResponder freezes tokens through the token service. Its Kill
// freezes every token that is not already frozen, revoked or expired (the
// kill switch of issue #16 replaces it).
type tokenResponder struct {
	tokens *token.Service
	log    *slog.Logger
}

// FreezeToken implements detect.Responder.
func (r tokenResponder) FreezeToken(ctx context.Context, id, reason string) error {
	if err := r.tokens.Freeze(ctx, token.ID(id)); err != nil {
		return err
	}
	r.log.Warn("detect: token frozen", "token_id", id, "reason", reason)
	return nil
}

// Kill implements detect.Responder.
func (r tokenResponder) Kill(ctx context.Context, reason string) error {
	all, err := r.tokens.List(ctx)
	if err != nil {
		return fmt.Errorf("kill: list tokens: %w", err)
	}
	now := time.Now()
	var errs []error
	n := 0
	for _, t := range all {
		if !t.FrozenAt.IsZero() || !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
			continue
		}
		if err := r.tokens.Freeze(ctx, t.ID); err != nil {
			errs = append(errs, fmt.Errorf("freeze %s: %w", t.ID, err))
			continue
		}
		n++
	}
	r.log.Error("detect: kill switch: every token frozen", "frozen", n, "reason", reason)
	if len(errs) > 0 {
		return fmt.Errorf("kill: %w", errors.Join(errs...))
	}
	return nil
}

// adminEvents sends each audited admin write to the audit log, the
// structured log and the detector (not to the gateway's metrics).
type adminEvents struct {
	log    *audit.Log
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
	_ detect.Notifier  = logNotifier{}
	_ detect.Responder = tokenResponder{}
	_ detect.Recorder  = (*audit.Log)(nil)
	_ gateway.Guard    = (*detect.Detector)(nil)
	_ audit.Sink       = adminEvents{}
)
