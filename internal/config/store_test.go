package config

import (
	"strings"
	"testing"
	"time"
)

func TestStoreSection(t *testing.T) {
	c, err := Parse("s.yaml", []byte("store:\n  postgres:\n    dsn: env:KEYSTILE_PG_DSN\n    max_conns: 20\n    statement_timeout: 5s\n    migrate_on_start: true\n"+
		"  redis:\n    addr: redis.internal:6379\n    password_ref: file:/run/secrets/redis\n    db: 2\n    tls: true\n    ca_file: /etc/keystile/redis-ca.pem\n"+
		"    rate_limit_fallback: local_share\n    replicas: 3\n  poll_interval: 500ms\n  replica_id: gw-a\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Store
	want := Store{
		Postgres: StorePostgres{DSN: "env:KEYSTILE_PG_DSN", MaxConns: 20, StatementTimeout: 5 * time.Second, MigrateOnStart: true},
		Redis: StoreRedis{Addr: "redis.internal:6379", PasswordRef: "file:/run/secrets/redis", DB: 2, TLS: true, CAFile: "/etc/keystile/redis-ca.pem",
			RateLimitFallback: RateLimitLocalShare, Replicas: 3},
		PollInterval: 500 * time.Millisecond, ReplicaID: "gw-a",
	}
	if s != want {
		t.Fatalf("store = %+v\nwant    %+v", s, want)
	}
	if !s.Shared() {
		t.Fatal("Shared() = false with a DSN")
	}
	d := Default().Store
	if d.Shared() || d.PollInterval != time.Second || d.Redis.Addr != "" {
		t.Fatalf("default store = %+v", d)
	}
}

func TestStoreErrors(t *testing.T) {
	const canary = "hunter2-canary"
	pg := "store:\n  postgres:\n    dsn: env:PG\n"
	tests := []struct{ name, yaml, want string }{
		{"literal url dsn", "store:\n  postgres:\n    dsn: postgres://app:" + canary + "@db:5432/k\n",
			`s.yaml:3:5: store.postgres.dsn: must be a secret reference to the DSN (env:VAR, file:PATH, dotenv:PATH#KEY or keyring:SERVICE/USER), never the connection string itself`},
		{"literal kv dsn", "store:\n  postgres:\n    dsn: \"host=db password=" + canary + "\"\n",
			`s.yaml:3:5: store.postgres.dsn: must be a secret reference to the DSN`},
		{"bare word dsn", "store:\n  postgres:\n    dsn: " + canary + "\n", `store.postgres.dsn: must be a secret reference to the DSN (env:VAR, file:PATH, dotenv:PATH#KEY or keyring:SERVICE/USER), never the secret itself`},
		{"vault dsn", "store:\n  postgres:\n    dsn: vault:pg#dsn\n", `s.yaml:3:5: store.postgres.dsn: cannot be a vault: reference`},
		{"max conns", pg + "    max_conns: 0\n", `s.yaml:4:5: store.postgres.max_conns: must be between 1 and 1000, got 0`},
		{"statement timeout", pg + "    statement_timeout: -1s\n", `store.postgres.statement_timeout: must be positive`},
		{"pg option without dsn", "store:\n  postgres:\n    migrate_on_start: true\n", `s.yaml:3:5: store.postgres.migrate_on_start: only used with store.postgres.dsn`},
		{"redis without postgres", "store:\n  redis:\n    addr: 127.0.0.1:6379\n",
			`s.yaml:3:5: store.redis.addr: needs store.postgres.dsn: Redis accelerates a shared PostgreSQL store`},
		{"redis addr", pg + "  redis:\n    addr: redis\n", `s.yaml:5:5: store.redis.addr: must be host:port (e.g. 127.0.0.1:6379)`},
		{"redis port", pg + "  redis:\n    addr: redis:0\n", `store.redis.addr: invalid port "0"`},
		{"redis password literal", pg + "  redis:\n    addr: r:6379\n    password_ref: " + canary + "\n", `s.yaml:6:5: store.redis.password_ref: must be a secret reference to the password`},
		{"redis option without addr", pg + "  redis:\n    tls: true\n", `s.yaml:5:5: store.redis.tls: only used with store.redis.addr`},
		{"ca without tls", pg + "  redis:\n    addr: r:6379\n    ca_file: /ca.pem\n", `s.yaml:6:5: store.redis.ca_file: only used with store.redis.tls: true`},
		{"fallback", pg + "  redis:\n    addr: r:6379\n    rate_limit_fallback: open\n", `store.redis.rate_limit_fallback: must be one of fail_closed|local_share, got "open"`},
		{"local share needs replicas", pg + "  redis:\n    addr: r:6379\n    rate_limit_fallback: local_share\n", `store.redis.replicas: required with rate_limit_fallback local_share`},
		{"db", pg + "  redis:\n    addr: r:6379\n    db: -1\n", `store.redis.db: must be between 0 and 65536, got -1`},
		{"poll interval", "store:\n  poll_interval: 10ms\n", `s.yaml:2:3: store.poll_interval: must be between 50ms and 1m, got 10ms`},
		{"replica id", "store:\n  replica_id: Gw A\n", `s.yaml:2:3: store.replica_id: must match [a-z0-9][a-z0-9_.-]{0,63}, got "Gw A"`},
		{"unknown key", "store:\n  postgress: {}\n", `s.yaml:2:3: store.postgress: unknown key "postgress" (did you mean "postgres"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), canary) {
				t.Fatalf("error repeats the secret: %v", err)
			}
		})
	}
}

// TestStoreReplicasWithFailClosed: replicas divides the venues' own limits
// whatever the rate-limit fallback, so it is accepted with fail_closed.
func TestStoreReplicasWithFailClosed(t *testing.T) {
	c, err := Parse("s.yaml", []byte("store:\n  postgres:\n    dsn: env:PG\n  redis:\n    addr: r:6379\n    replicas: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Redis.Replicas != 3 || c.Store.Redis.RateLimitFallback != "" && c.Store.Redis.RateLimitFallback != RateLimitFailClosed {
		t.Fatalf("redis = %+v", c.Store.Redis)
	}
}
