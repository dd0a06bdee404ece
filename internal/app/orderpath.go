package app

import (
	"context"
	"fmt"
	"os"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// Purposes of keys derived from the vault.
const purposeIdem = "idem.v1"

// openOrderPath builds what stands between a bot's request and its
// signature: the compiled policies with their durable budgets, the
// idempotency manager and the durable audit log.
func (s *Server) openOrderPath(ctx context.Context, v *vault.Vault, db *sqlite.DB, cfg *config.Config, dataDir string) error {
	set, err := policy.Compile(cfg)
	if err != nil {
		return err
	}
	s.policy = policy.New(policy.Options{Budgets: db.Budgets(), Logger: s.log})
	s.policy.Load(set)

	seed, err := v.DeriveKey(purposeIdem)
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	s.idem, err = idem.New(idem.Options{Store: db.Idempotency(), Secret: seed.Reveal(), Window: cfg.Idempotency.Window, Logger: s.log})
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}

	keys, err := AuditKeys(ctx, v)
	if err != nil {
		return err
	}
	s.audit, err = openAuditLog(ctx, cfg, dataDir, keys, os.Stdout, s.log, s.metrics.ObserveAuditCommit)
	if err != nil {
		return err
	}
	return nil
}

// events sends each gateway event to the durable audit log, the
// structured log, the metrics and the anomaly detector (which only queues
// it).
type events struct {
	log     *audit.Log
	text    audit.Sink
	metrics audit.Sink
	loss    audit.Sink // the kill switch's loss guard (non-blocking); nil if none
	detect  audit.Sink
}

// Record implements audit.Sink.
func (e events) Record(ctx context.Context, ev audit.Event) {
	if e.log != nil {
		e.log.Record(ctx, ev)
	}
	e.text.Record(ctx, ev)
	if e.metrics != nil {
		e.metrics.Record(ctx, ev)
	}
	if e.loss != nil {
		e.loss.Record(ctx, ev)
	}
	if e.detect != nil {
		e.detect.Record(ctx, ev)
	}
}

var _ audit.Sink = events{}
