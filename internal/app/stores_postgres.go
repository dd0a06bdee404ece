//go:build keystile_pg

package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
	"github.com/keystile/keystile/internal/venue/kraken"
)

// pgStores is the shared PostgreSQL database.
type pgStores struct{ db *postgres.DB }

func (s *pgStores) Vault() vault.Store            { return s.db.Vault() }
func (s *pgStores) Tokens() token.Store           { return s.db.Tokens() }
func (s *pgStores) Nonces() kraken.NonceStore     { return s.db.Nonces() }
func (s *pgStores) MFA() mfa.Store                { return s.db.MFA() }
func (s *pgStores) Alerts() alert.DigestStore     { return s.db.Alerts() }
func (s *pgStores) Trips() killswitch.Store       { return s.db.Trips() }
func (s *pgStores) LossLedger() killswitch.Ledger { return s.db.LossLedger() }
func (s *pgStores) Detect() DetectStore           { return s.db.Detect() }
func (s *pgStores) Budgets() policy.BudgetStore   { return s.db.Budgets() }
func (s *pgStores) Idempotency() idem.Store       { return s.db.Idempotency() }
func (s *pgStores) Ledger() ledger.Store          { return s.db.Ledger() }
func (s *pgStores) Close() error                  { return s.db.Close() }
func (s *pgStores) Backend() string               { return BackendPostgres }

func (s *pgStores) ping(ctx context.Context) error { return s.db.Ping(ctx) }

func (s *pgStores) status(ctx context.Context) *admin.StoreStatus {
	st := &admin.StoreStatus{Backend: BackendPostgres, Path: s.db.Where()}
	var errs []error
	if err := s.db.Ping(ctx); err != nil {
		errs = append(errs, err)
	} else {
		st.Reachable = true
	}
	v, err := s.db.SchemaVersion(ctx)
	st.SchemaVersion = v
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		st.Error = err.Error()
	}
	return st
}

func (s *pgStores) openAudit(ctx context.Context, a auditArgs) (AuditLog, error) {
	mirrors, err := auditMirrors(a.cfg, AuditSinkPostgres, a.stdout)
	if err != nil {
		return nil, err
	}
	return s.db.OpenAuditLog(ctx, postgres.AuditOptions{Keys: a.keys, CheckpointEvery: a.cfg.Audit.CheckpointEvery,
		MaxBatch: a.cfg.Audit.MaxBatch, Mirrors: mirrors, Logger: a.log, ObserveCommit: a.observe})
}

func openPostgresStores(ctx context.Context, env Env, cfg *config.Config, o StoreOptions) (Stores, error) {
	po, err := PostgresOptions(ctx, env, cfg, "")
	if err != nil {
		return nil, err
	}
	po.Migrate = o.Migrate
	db, err := postgres.Open(ctx, po)
	if err != nil {
		return nil, err
	}
	return &pgStores{db: db}, nil
}

// openPostgresAuditReader reads the audit log kept in the configured
// PostgreSQL database; Close closes its pool.
func openPostgresAuditReader(ctx context.Context, env Env, cfg *config.Config) (AuditReader, error) {
	po, err := PostgresOptions(ctx, env, cfg, "")
	if err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, po)
	if err != nil {
		return nil, err
	}
	return pgAuditReader{Reader: db.AuditReader(), db: db}, nil
}

// pgAuditReaderOn reads the audit log kept in db.
func pgAuditReaderOn(db *postgres.DB) audit.Reader { return db.AuditReader() }

// pgAuditReader is the database's audit reader with the pool it closes.
type pgAuditReader struct {
	audit.Reader
	db *postgres.DB
}

// Head returns the last record's seq and hash (and the last checkpoint's
// seq).
func (r pgAuditReader) Head(ctx context.Context) (audit.Head, error) {
	if h, ok := r.Reader.(interface {
		Head(context.Context) (audit.Head, error)
	}); ok {
		return h.Head(ctx)
	}
	var head audit.Head
	err := r.Scan(ctx, 1, func(rec audit.Record) error {
		head.Seq, head.Hash = rec.Seq, rec.Hash
		return nil
	})
	if err != nil {
		return audit.Head{}, fmt.Errorf("app: audit head: %w", err)
	}
	err = r.Checkpoints(ctx, func(c audit.Checkpoint) error {
		head.CheckpointSeq = c.Seq
		return nil
	})
	return head, err
}

func (r pgAuditReader) Close() error { return r.db.Close() }

var (
	_ Stores   = (*pgStores)(nil)
	_ AuditLog = (*postgres.AuditLog)(nil)
)
