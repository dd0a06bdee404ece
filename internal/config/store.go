package config

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secretref"
)

// Store configures where keystile keeps its state (store:). The zero
// value is the default: the embedded SQLite database in the data dir, one
// server. Setting store.postgres.dsn moves every table (vault, tokens,
// budgets, idempotency, the ledger, the audit log, ...) into a shared
// PostgreSQL database so that several replicas can serve the same bots;
// store.redis then adds fast fan-out of revocations and kill switches
// and shared rate limits. The master key stays local to each replica
// (key file or keyring): the database only ever holds sealed bytes.
type Store struct {
	// Postgres (store.postgres) is the shared database. Unset: SQLite.
	Postgres StorePostgres `yaml:"postgres"`
	// Redis (store.redis) accelerates a shared PostgreSQL store; it is
	// refused without one.
	Redis StoreRedis `yaml:"redis"`
	// PollInterval (store.poll_interval) is how often a replica re-reads
	// revocations, freezes and kill-switch trips from PostgreSQL when
	// Redis is absent or down (the fan-out's fallback). Default 1s;
	// between 50ms and 1m.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ReplicaID (store.replica_id) names this replica in logs, status and
	// the fan-out; [a-z0-9][a-z0-9_.-]{0,63}. "" means host name and
	// process id.
	ReplicaID string `yaml:"replica_id"`
}

// StorePostgres configures the shared PostgreSQL database.
type StorePostgres struct {
	// DSN (store.postgres.dsn) is a secret reference to the connection
	// string (postgres://user:password@host:5432/db?sslmode=verify-full&
	// sslrootcert=/etc/keystile/pg-ca.pem, or key=value pairs): env:VAR,
	// file:PATH, dotenv:PATH#KEY or keyring:SERVICE/USER. Never the DSN
	// itself: it holds the database password. TLS is set in the DSN
	// (sslmode, sslrootcert, sslcert, sslkey).
	DSN string `yaml:"dsn"`
	// MaxConns (store.postgres.max_conns) caps the connection pool of
	// each replica. Default 0: max(4, CPUs); at most 1000.
	MaxConns int `yaml:"max_conns"`
	// StatementTimeout (store.postgres.statement_timeout) bounds each
	// statement on the server. Default 30s.
	StatementTimeout time.Duration `yaml:"statement_timeout"`
	// MigrateOnStart (store.postgres.migrate_on_start) applies pending
	// migrations when serve starts (as serve --migrate does). Default
	// false: serve refuses an older schema; run `keystile migrate`.
	MigrateOnStart bool `yaml:"migrate_on_start"`
}

// StoreRedis configures Redis.
type StoreRedis struct {
	// Addr (store.redis.addr) is the server's host:port. "" means no
	// Redis: revocations reach other replicas by polling PostgreSQL
	// (store.poll_interval) and rate limits are per replica.
	Addr string `yaml:"addr"`
	// PasswordRef (store.redis.password_ref) is a secret reference to the
	// password (env:, file:, dotenv: or keyring:). "" means none.
	PasswordRef string `yaml:"password_ref"`
	// DB (store.redis.db) is the database number. Default 0.
	DB int `yaml:"db"`
	// TLS (store.redis.tls) connects over TLS (at least 1.2). Default
	// false.
	TLS bool `yaml:"tls"`
	// CAFile (store.redis.ca_file) is a PEM file of the CA that signed
	// the server's certificate; "" means the system roots. Only with tls.
	CAFile string `yaml:"ca_file"`
	// RateLimitFallback (store.redis.rate_limit_fallback) is what shared
	// rate limits do while Redis is down: fail_closed (default: refuse
	// the requests a limit governs) or local_share (each replica allows
	// its share, the limit divided by store.redis.replicas).
	RateLimitFallback string `yaml:"rate_limit_fallback"`
	// Replicas (store.redis.replicas) is the number of replicas sharing
	// the venues' keys: venues whose rate-limit model counts keystile's
	// own requests (OKX, Coinbase, Kraken) give each replica 1/replicas
	// of their limits, and with local_share each replica allows that
	// share of a policy rate limit while Redis is down (required there).
	// Default 0: limits are not divided.
	Replicas int `yaml:"replicas"`
}

// Rate limit fallbacks (store.redis.rate_limit_fallback).
const (
	RateLimitFailClosed = "fail_closed"
	RateLimitLocalShare = "local_share"
)

// DefaultStorePollInterval is store.poll_interval's default.
const DefaultStorePollInterval = time.Second

// Shared reports whether the state is in a shared PostgreSQL database.
func (s Store) Shared() bool { return s.Postgres.DSN != "" }

// storeRefSchemes are the reference schemes a store secret may use: not
// vault:, which needs the database the reference opens.
const storeRefSchemes = "env:VAR, file:PATH, dotenv:PATH#KEY or keyring:SERVICE/USER"

var replicaIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// store checks the store section. Its messages never repeat the DSN or
// the password: a value written where a reference belongs is the secret.
func (ck *checker) store(s Store) {
	p := s.Postgres
	if p.DSN != "" {
		ck.storeRef("store.postgres.dsn", p.DSN, "the DSN")
	}
	if p.MaxConns < 0 || p.MaxConns > 1000 || (p.MaxConns == 0 && ck.d.present("store.postgres.max_conns")) {
		ck.add("store.postgres.max_conns", "must be between 1 and 1000, got %d", p.MaxConns)
	}
	ck.positive("store.postgres.statement_timeout", p.StatementTimeout)
	if p.DSN == "" {
		for _, k := range []string{"max_conns", "statement_timeout", "migrate_on_start"} {
			if ck.d.present("store.postgres." + k) {
				ck.add("store.postgres."+k, "only used with store.postgres.dsn")
			}
		}
	}

	r := s.Redis
	if r.Addr != "" {
		ck.hostPort("store.redis.addr", r.Addr, "127.0.0.1:6379")
		if p.DSN == "" {
			ck.add("store.redis.addr", "needs store.postgres.dsn: Redis accelerates a shared PostgreSQL store and is not a store of its own")
		}
	} else {
		for _, k := range []string{"password_ref", "db", "tls", "ca_file", "rate_limit_fallback", "replicas"} {
			if ck.d.present("store.redis." + k) {
				ck.add("store.redis."+k, "only used with store.redis.addr")
			}
		}
	}
	if r.PasswordRef != "" {
		ck.storeRef("store.redis.password_ref", r.PasswordRef, "the password")
	}
	if r.DB < 0 || r.DB > 1<<16 {
		ck.add("store.redis.db", "must be between 0 and 65536, got %d", r.DB)
	}
	if r.CAFile != "" && !r.TLS {
		ck.add("store.redis.ca_file", "only used with store.redis.tls: true")
	}
	ck.oneOf("store.redis.rate_limit_fallback", r.RateLimitFallback, RateLimitFailClosed, RateLimitLocalShare)
	switch {
	case r.Replicas < 0 || r.Replicas > 1000 || (r.Replicas == 0 && ck.d.present("store.redis.replicas")):
		ck.add("store.redis.replicas", "must be between 1 and 1000, got %d", r.Replicas)
	case r.RateLimitFallback == RateLimitLocalShare && r.Replicas == 0:
		ck.add("store.redis.replicas", "required with rate_limit_fallback local_share: each replica allows the limit divided by it")
	}

	ck.positive("store.poll_interval", s.PollInterval)
	if d := s.PollInterval; d != 0 && (d < 50*time.Millisecond || d > time.Minute) {
		ck.add("store.poll_interval", "must be between 50ms and 1m, got %s", d)
	}
	if s.ReplicaID != "" && !replicaIDPattern.MatchString(s.ReplicaID) {
		ck.add("store.replica_id", "must match [a-z0-9][a-z0-9_.-]{0,63}, got %q", s.ReplicaID)
	}
}

// storeRef checks a store secret reference: env:, file:, dotenv: or
// keyring:.
func (ck *checker) storeRef(key, v, what string) {
	r, err := secretref.Parse(v)
	switch {
	case err != nil && looksLikeDSN(v):
		ck.add(key, "must be a secret reference to %s (%s), never the connection string itself: it holds the database password (e.g. dsn: env:KEYSTILE_PG_DSN)", what, storeRefSchemes)
	case err != nil:
		ck.add(key, "must be a secret reference to %s (%s), never the secret itself", what, storeRefSchemes)
	case r.Scheme == secretref.SchemeVault:
		ck.add(key, "cannot be a vault: reference (the vault is opened from this store): use %s", storeRefSchemes)
	}
}

// looksLikeDSN reports whether v is a connection string rather than a
// reference to one.
func looksLikeDSN(v string) bool {
	l := strings.ToLower(v)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://") ||
		strings.Contains(l, "password=") || strings.Contains(l, "host=") || strings.Contains(l, "dbname=") || strings.Contains(l, "@")
}

// hostPort checks a host:port address to connect to (port 1-65535). It
// does not repeat the value, which could hold userinfo.
func (ck *checker) hostPort(key, addr, example string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, " /@?#") {
		ck.add(key, "must be host:port (e.g. %s)", example)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		ck.add(key, "invalid port %q", port)
	}
}
