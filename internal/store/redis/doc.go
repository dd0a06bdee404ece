// Package redisstore connects keystile gateway replicas through Redis, as
// an accelerator only: PostgreSQL stays the source of truth, and every
// feature here has a defined behaviour while Redis is down.
//
//   - Rates implements policy.SharedRates with GCRA buckets in Redis (the
//     algorithm and key layout of github.com/go-redis/redis_rate), so the
//     replicas share one rate limit per bucket. While Redis fails, the
//     policy engine's fallback applies (fail closed, or each replica keeps
//     its share of the limit in process).
//   - Bus is the fast transport of package fanout: Publish increments a
//     per-topic version and publishes it; subscribers refresh at once.
//     Replicas also poll PostgreSQL's version (fanout.Watcher), so a lost
//     message or an outage delays a revocation by at most the poll
//     interval.
//   - Backoffs implements venue.BackoffStore: a venue's 429/418 back-off
//     seen by one replica is a key whose expiry is its end, extended only
//     to a later end; venue.Share makes every replica's rate-limit model
//     refuse until then. While Redis fails, each replica's own model
//     decides alone.
//   - Client.Ready and Client.Status report health for readyz and
//     `keystile status`.
//
// Security model: Redis holds no secrets, only counters, version numbers,
// rate-bucket times and venue back-off expiries keyed by policy, token id,
// venue id and account (credential) name. The Redis password is a
// secret.Value, handed to the driver only when it connects, and never
// appears in an error or a log line; errors name the server by
// host:port/db.
package redisstore
