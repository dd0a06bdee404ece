package app

import (
	"github.com/keystile/keystile/internal/venue"
)

// sharedLimits fits a built venue's rate-limit model (venue.RateLimiter)
// to several replicas on one API key, with store.redis: a 429 or 418 one
// replica sees makes every replica back off (venue.Share over Redis, keyed
// by venue id and credential), and with store.redis.replicas = n > 1 a
// model that counts keystile's own requests (venue.LimitSharer: OKX,
// Coinbase, Kraken) allows this replica 1/n of each limit. Models that
// read the exchange's usage headers (Binance, Bybit) see the whole key's
// usage already and are left whole. Without Redis the venue is unchanged.
func (s *Server) sharedLimits(id string, b builtVenue) builtVenue {
	if s.scale.redis == nil {
		return b
	}
	lim, ok := b.gv.Impl.(venue.RateLimiter)
	if !ok {
		return b
	}
	if n := s.scale.fallback.Replicas; n > 1 {
		if sh, ok := b.gv.Impl.(venue.LimitSharer); ok {
			sh.ShareLimits(n)
		}
	}
	account := b.cfg.Credential
	if account == "" {
		account = id
	}
	b.gv.Limiter = venue.Share(lim, venue.SharedOptions{
		Store:  s.scale.redis.Backoffs(),
		Key:    id + "/" + account,
		Logger: s.log.With("venue", id),
	})
	return b
}
