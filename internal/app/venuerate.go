package app

import (
	"time"

	"github.com/keystile/keystile/internal/config"
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
	o := venue.SharedOptions{
		Store:  s.scale.redis.Backoffs(),
		Key:    id + "/" + account,
		Logger: s.log.With("venue", id),
	}
	o.Backoff, o.MaxBackoff = sharedBackoff(b.cfg.Type)
	b.gv.Limiter = venue.Share(lim, o)
	return b
}

// sharedBackoff is the back-off the other replicas take after a 429
// without Retry-After, and the longest Retry-After they honour: the venue
// model's own (0: venue.Share's defaults, 1 s and 10 min).
func sharedBackoff(typ string) (def, maxBackoff time.Duration) {
	switch typ {
	case config.TypeBinance:
		// A 418 ban's Retry-After runs from 2 minutes to 3 days.
		return time.Minute, 72 * time.Hour
	case config.TypeKraken:
		return time.Minute, 0
	case config.TypeOKX:
		return 2 * time.Second, time.Hour
	}
	return 0, 0
}
