//go:build !keystile_pg

package app

import (
	"context"
	"errors"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/postgres"
)

// TODO(#17): removed when main brings the PostgreSQL stores
// (store/postgres Vault, Tokens, ..., OpenAuditLog); stores_postgres.go
// (build tag keystile_pg until then) is the real branch.
func openPostgresStores(context.Context, Env, *config.Config, StoreOptions) (Stores, error) {
	return nil, errors.New("store.postgres: this build has no PostgreSQL stores yet")
}

// openPostgresAuditReader: see openPostgresStores.
func openPostgresAuditReader(context.Context, Env, *config.Config) (AuditReader, error) {
	return nil, errors.New("store.postgres: this build has no PostgreSQL stores yet")
}

// pgAuditReaderOn: see openPostgresStores.
func pgAuditReaderOn(*postgres.DB) audit.Reader { return noAuditReader{} }

type noAuditReader struct{}

func (noAuditReader) Scan(context.Context, uint64, func(audit.Record) error) error {
	return errors.New("store.postgres: this build has no PostgreSQL audit reader yet")
}

func (noAuditReader) Checkpoints(context.Context, func(audit.Checkpoint) error) error {
	return errors.New("store.postgres: this build has no PostgreSQL audit reader yet")
}

// scaleOut: see openPostgresStores.
type scaleOut struct{}

func (s *Server) policyOptions(budgets policy.BudgetStore) policy.Options {
	return policy.Options{Budgets: budgets, Logger: s.log}
}

func (s *Server) closeScale() {}

func (s *Server) openFanout(context.Context, Env, *config.Config) error { return nil }

func (s *Server) watchChanges(context.Context) []<-chan struct{} { return nil }
