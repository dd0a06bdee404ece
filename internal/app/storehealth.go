package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
)

// ready is the gateway's readiness (/-/readyz): the database answers
// within a second. Redis being down does not make a replica unready: its
// fallbacks (polling, the rate-limit fallback) carry on.
func (s *Server) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.db.ping(ctx)
	s.storeUp.Store(err == nil)
	return err
}

// StoreHealth is what /-/readyz says about the stores: states only, never
// an address or an error (the log has those).
type StoreHealth struct {
	// Backend is "sqlite" or "postgres".
	Backend string `json:"backend"`
	// Postgres is "reachable" or "unreachable" (postgres only).
	Postgres string `json:"postgres,omitempty"`
	// Redis is "ok" or "down" (with store.redis only); FanOut is how
	// revocations reach the other replicas ("redis" or "polling") and
	// RateLimitFallback what shared rate limits do while Redis is down.
	Redis             string `json:"redis,omitempty"`
	FanOut            string `json:"fan_out,omitempty"`
	RateLimitFallback string `json:"rate_limit_fallback,omitempty"`
	// ReplicaID names this replica (postgres only).
	ReplicaID string `json:"replica_id,omitempty"`
}

// health is the gateway's Health hook; it follows the ping ready made.
func (s *Server) health() any {
	h := StoreHealth{Backend: s.db.Backend()}
	if h.Backend != BackendPostgres {
		return h
	}
	h.Postgres, h.ReplicaID = "unreachable", s.replicaID
	if s.storeUp.Load() {
		h.Postgres = "reachable"
	}
	if r := s.redisStatus(); r != nil {
		h.Redis, h.FanOut, h.RateLimitFallback = r.State, r.FanOut, r.RateLimitFallback
	} else {
		h.FanOut = "polling"
	}
	return h
}

// redisStatus is Redis's state, or nil without store.redis.
func (s *Server) redisStatus() *admin.RedisStatus {
	if s.redis == nil {
		return nil
	}
	return s.redis()
}

// replicaName is store.replica_id, or host name and process id.
func replicaName(cfg *config.Config) string {
	if cfg.Store.ReplicaID != "" {
		return cfg.Store.ReplicaID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "keystile"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
