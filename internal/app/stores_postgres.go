package app

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/fanout"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/postgres"
	redisstore "github.com/keystile/keystile/internal/store/redis"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
	"github.com/keystile/keystile/internal/venue/kraken"
)

// pgStores is the shared PostgreSQL database. Once serve has set its
// fan-out bus, the vault, token and kill-switch stores announce each
// committed write on it, so that other replicas refresh at once rather
// than at their next poll.
type pgStores struct {
	db  *postgres.DB
	bus atomic.Pointer[fanout.Bus]
	log *slog.Logger
}

func (s *pgStores) Vault() vault.Store            { return publishingVault{Store: s.db.Vault(), p: s} }
func (s *pgStores) Tokens() token.Store           { return publishingTokens{Store: s.db.Tokens(), p: s} }
func (s *pgStores) Trips() killswitch.Store       { return publishingTrips{Store: s.db.Trips(), p: s} }
func (s *pgStores) Nonces() kraken.NonceStore     { return s.db.Nonces() }
func (s *pgStores) MFA() mfa.Store                { return s.db.MFA() }
func (s *pgStores) Alerts() alert.DigestStore     { return s.db.Alerts() }
func (s *pgStores) LossLedger() killswitch.Ledger { return s.db.LossLedger() }
func (s *pgStores) Detect() DetectStore           { return publishingDetect{DetectStore: s.db.Detect(), p: s} }
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
	return pgAuditReader{AuditReader: db.AuditReader(), db: db}, nil
}

// pgAuditReaderOn reads the audit log kept in db.
func pgAuditReaderOn(db *postgres.DB) audit.Reader { return db.AuditReader() }

// pgAuditReader is the database's audit reader with the pool it closes
// (nil: the server's own).
type pgAuditReader struct {
	*postgres.AuditReader
	db *postgres.DB
}

func (r pgAuditReader) Close() error {
	if r.db == nil {
		return nil // the server's pool
	}
	return r.db.Close()
}

func (s *pgStores) auditReader(context.Context) (AuditReader, error) {
	return pgAuditReader{AuditReader: s.db.AuditReader()}, nil
}

var (
	_ Stores   = (*pgStores)(nil)
	_ AuditLog = (*postgres.AuditLog)(nil)
)

// publish announces that topic changed (its version was bumped in the
// write's transaction). A failure costs latency only: the other replicas
// poll.
func (s *pgStores) publish(ctx context.Context, topic string) {
	bus := s.bus.Load()
	if bus == nil {
		return // init and offline commands: serve's replicas poll
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := bus.Publish(ctx, topic); err != nil && s.log != nil {
		s.log.Warn("keystile: announce a change to the other replicas (they will see it at their next poll)", "topic", topic, "err", err)
	}
}

// publishingTokens announces token writes (create, revoke, freeze,
// rotate) once committed.
type publishingTokens struct {
	token.Store
	p *pgStores
}

func (t publishingTokens) Create(ctx context.Context, r token.Record, updated ...token.Record) error {
	err := t.Store.Create(ctx, r, updated...)
	if err == nil {
		t.p.publish(ctx, postgres.TopicTokens)
	}
	return err
}

func (t publishingTokens) Update(ctx context.Context, r token.Record) error {
	err := t.Store.Update(ctx, r)
	if err == nil {
		t.p.publish(ctx, postgres.TopicTokens)
	}
	return err
}

// publishingVault announces vault writes (a credential set, rotated,
// revoked or deleted, a rekey) once committed.
type publishingVault struct {
	vault.Store
	p *pgStores
}

func (v publishingVault) done(ctx context.Context, err error) error {
	if err == nil {
		v.p.publish(ctx, postgres.TopicVault)
	}
	return err
}

func (v publishingVault) PutVersion(ctx context.Context, c vault.CredentialRecord, ver vault.VersionRecord, keep int) error {
	return v.done(ctx, v.Store.PutVersion(ctx, c, ver, keep))
}

func (v publishingVault) Revoke(ctx context.Context, c vault.CredentialRecord, compromised []vault.Fingerprint) error {
	return v.done(ctx, v.Store.Revoke(ctx, c, compromised))
}

func (v publishingVault) Delete(ctx context.Context, name string) error {
	return v.done(ctx, v.Store.Delete(ctx, name))
}

func (v publishingVault) Rekey(ctx context.Context, kek vault.KEKRecord, deks []vault.Rewrapped, sys []vault.SystemKeyRecord) error {
	return v.done(ctx, v.Store.Rekey(ctx, kek, deks, sys))
}

// publishingTrips announces kill-switch trips and clearings once
// committed.
type publishingTrips struct {
	killswitch.Store
	p *pgStores
}

func (t publishingTrips) Engage(ctx context.Context, tr killswitch.Trip) (killswitch.Trip, bool, error) {
	got, created, err := t.Store.Engage(ctx, tr)
	if err == nil && created {
		t.p.publish(ctx, postgres.TopicKillSwitch)
	}
	return got, created, err
}

func (t publishingTrips) Clear(ctx context.Context, f killswitch.Filter, by, reason string, at time.Time) ([]killswitch.Trip, error) {
	got, err := t.Store.Clear(ctx, f, by, reason, at)
	if err == nil && len(got) > 0 {
		t.p.publish(ctx, postgres.TopicKillSwitch)
	}
	return got, err
}

// publishingDetect announces the detector's holds put or released once
// committed.
type publishingDetect struct {
	DetectStore
	p *pgStores
}

func (d publishingDetect) PutHold(ctx context.Context, h detect.Hold) error {
	err := d.DetectStore.PutHold(ctx, h)
	if err == nil {
		d.p.publish(ctx, postgres.TopicDetectHolds)
	}
	return err
}

func (d publishingDetect) DeleteHold(ctx context.Context, kind, subject string) error {
	err := d.DetectStore.DeleteHold(ctx, kind, subject)
	if err == nil {
		d.p.publish(ctx, postgres.TopicDetectHolds)
	}
	return err
}

// purposeRedisPrefix derives the installation's Redis key prefix.
const purposeRedisPrefix = "redis.prefix.v1"

// RedisKeyPrefix is the prefix of the installation's Redis keys and
// channels (tests clean up with it).
func RedisKeyPrefix(v *vault.Vault) (string, error) {
	id, err := v.DeriveKey(purposeRedisPrefix)
	if err != nil {
		return "", err
	}
	defer id.Wipe()
	return "keystile:" + hex.EncodeToString(id.Reveal()[:6]) + ":", nil
}

// scaleOut is what serve adds with store.postgres: the fan-out bus and,
// with store.redis, the Redis client and its shared rate limits.
type scaleOut struct {
	bus      *fanout.Bus
	redis    *redisstore.Client
	rates    policy.SharedRates // nil: per-replica limits
	fallback policy.RatesFallback
}

// policyOptions are the policy engine's options: shared rate limits with
// Redis.
func (s *Server) policyOptions(budgets policy.BudgetStore) policy.Options {
	return policy.Options{Budgets: budgets, Logger: s.log, Rates: s.scale.rates, RatesFallback: s.scale.fallback}
}

// closeScale closes the Redis client.
func (s *Server) closeScale() {
	if s.scale.redis != nil {
		if err := s.scale.redis.Close(); err != nil {
			s.log.Warn("keystile: close Redis", "err", err)
		}
	}
}

// RouteRedisDriverLogs sends the Redis driver's own log lines (dial
// failures, reconnects) to log. The driver's logger is process-wide:
// serve calls this once, before NewServer.
func RouteRedisDriverLogs(log *slog.Logger) { redisstore.SetDriverLogger(log) }

// openFanout connects Redis (store.redis: the fast transport and the
// shared rate limits) and the fan-out bus that polls PostgreSQL's change
// versions every store.poll_interval. It runs before the token service
// and the policy engine are built, which use what it sets. Redis being
// down at start is logged, not fatal: the fallbacks apply until it
// answers.
func (s *Server) openFanout(ctx context.Context, env Env, cfg *config.Config) error {
	pg, ok := s.db.(*pgStores)
	if !ok {
		return nil
	}
	var tr fanout.Transport
	if r := cfg.Store.Redis; r.Addr != "" {
		// Keys and channels are prefixed with an identity of this
		// installation derived from its vault (the same on every replica,
		// different for another installation sharing the server).
		prefix, err := RedisKeyPrefix(s.vault)
		if err != nil {
			return fmt.Errorf("store.redis: %w", err)
		}
		ro := redisstore.Options{Addr: r.Addr, DB: r.DB, CAFile: r.CAFile, KeyPrefix: prefix}
		if r.PasswordRef != "" {
			pw, err := ResolveStoreSecret(ctx, env, "store.redis.password_ref", r.PasswordRef)
			if err != nil {
				return err
			}
			ro.Password = pw
		}
		if r.TLS {
			ro.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c, err := redisstore.New(ro)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := c.Ready(pctx); err != nil {
			s.log.Warn("keystile: Redis does not answer yet: revocations propagate by polling and rate limits use their fallback until it does", "err", err)
		}
		cancel()
		fb, err := policy.ParseRateFallback(r.RateLimitFallback)
		if err != nil {
			_ = c.Close()
			return err
		}
		s.scale.redis, s.scale.rates = c, c.Rates()
		s.scale.fallback = policy.RatesFallback{Mode: fb, Replicas: r.Replicas}
		tr = c.Bus()
	}
	bus, err := fanout.New(fanout.Options{Source: pg.db, Transport: tr, PollInterval: cfg.Store.PollInterval, Logger: s.log})
	if err != nil {
		return err
	}
	pg.log, s.scale.bus = s.log, bus
	pg.bus.Store(bus)
	if s.scale.redis != nil {
		c, poll, rf := s.scale.redis, bus.PollInterval(), s.scale.fallback
		s.redis = func() *admin.RedisStatus {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st := c.Status(ctx, redisstore.StatusOptions{RatesShared: true, Rates: rf, Poll: poll})
			rs := &admin.RedisStatus{Addr: cfg.Store.Redis.Addr, State: "ok", FanOut: "redis", RateLimitFallback: string(rf.Mode)}
			if !st.Up {
				rs.State, rs.FanOut, rs.Error = "down", "polling", st.Redis
			}
			return rs
		}
	}
	return nil
}

// watchChanges refreshes this replica when another one changed shared
// state: tokens (revoked, frozen, rotated, created), the kill switch and
// the vault (credentials set, rotated, revoked; a rekey).
// It returns once the baselines are read, after which nothing older than
// what is in memory is announced.
func (s *Server) watchChanges(ctx context.Context) []<-chan struct{} {
	if s.scale.bus == nil {
		return nil
	}
	refresh := func(what string, fn func(context.Context) error) func(int64) {
		return func(v int64) {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := fn(rctx); err != nil && ctx.Err() == nil {
				s.log.Warn("keystile: refresh after another replica's change", "what", what, "version", v, "err", err)
			}
		}
	}
	done := []<-chan struct{}{
		s.scale.bus.Watch(ctx, postgres.TopicTokens, refresh("tokens", s.tokens.Reload)),
		s.scale.bus.Watch(ctx, postgres.TopicKillSwitch, refresh("kill switch", s.kill.Refresh)),
		s.scale.bus.Watch(ctx, postgres.TopicVault, refresh("vault", s.vault.Refresh)),
	}
	if s.detect != nil {
		done = append(done, s.scale.bus.Watch(ctx, postgres.TopicDetectHolds, refresh("detector holds", s.detect.ReloadHolds)))
		refresh("detector holds", s.detect.ReloadHolds)(0)
	}
	// A change between loading and the watches' baselines is not missed.
	refresh("tokens", s.tokens.Reload)(0)
	refresh("kill switch", s.kill.Refresh)(0)
	refresh("vault", s.vault.Refresh)(0)
	return done
}
