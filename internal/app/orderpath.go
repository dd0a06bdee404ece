package app

import (
	"context"
	"fmt"
	"os"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/vault"
)

// Purposes of keys derived from the vault.
const purposeIdem = "idem.v1"

// openOrderPath builds what stands between a bot's request and its
// signature: the compiled policies, the idempotency manager, the durable
// audit log and the ledger, which makes an order's budget reservation,
// idempotency claim and intent record one write of the main database
// (with an audit log kept elsewhere, the intent is written there after
// it).
func (s *Server) openOrderPath(ctx context.Context, v *vault.Vault, db Stores, cfg *config.Config, dataDir string) error {
	set, err := policy.Compile(cfg)
	if err != nil {
		return err
	}
	s.policy = policy.New(s.policyOptions(db.Budgets()))
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
	s.ledger = db.Ledger()
	if AuditInDatabase(cfg, dataDir) {
		// The intent record shares the ledger's write (one fsync per
		// order).
		l, err := db.openAudit(ctx, auditArgs{cfg: cfg, dataDir: dataDir, keys: keys, stdout: os.Stdout, log: s.log, observe: s.metrics.ObserveAuditCommit})
		if err != nil {
			return err
		}
		s.audit = l
		return nil
	}
	l, err := openAuditLog(ctx, cfg, dataDir, keys, os.Stdout, s.log, s.metrics.ObserveAuditCommit)
	if err != nil {
		return err
	}
	s.audit, s.intents = l, l
	return nil
}

// events sends each gateway event to the durable audit log, the
// structured log, the metrics and the anomaly detector (which only queues
// it).
type events struct {
	log     AuditLog
	text    audit.Sink
	metrics audit.Sink
	console audit.Sink // the web console's live figures; nil when it is off
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
	if e.console != nil {
		e.console.Record(ctx, ev)
	}
	if e.loss != nil {
		e.loss.Record(ctx, ev)
	}
	if e.detect != nil {
		e.detect.Record(ctx, ev)
	}
}

var _ audit.Sink = events{}
