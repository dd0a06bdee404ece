// Package killswitch is keystile's panic button: one step that refuses
// every bot request (or every request to one venue, or one token's)
// before anything is signed, optionally cancels the open orders on every
// venue, and stays engaged — across restarts and replicas — until an
// admin clears it.
//
// # Security model
//
// The switch's state is a set of trips (scope all, venue or token) kept
// in a Store shared by every process (the SQLite database; later
// PostgreSQL): a replica re-reads it every Options.Refresh, and on a read
// error keeps the state in force rather than lifting it. The request path
// reads an in-memory snapshot only: Guard refuses a covered token at the
// token check (token.ErrKilled), and Transport — between the signer and
// the network — refuses a request to a covered venue right before it
// leaves. Engage publishes the new snapshot before it writes the store
// (a store failure leaves the switch engaged here and is retried), then
// waits for the requests that were already past the token check and on
// their way to a covered venue, so that when it returns nothing covered is
// in flight on this server. keystile's own cancel-all requests carry a
// context marker and pass the gate; nothing a bot sends can carry it.
//
// Bots may engage the switch for themselves (BotKill, behind POST
// /-/kill): their own token by default, wider if their policy allows
// (Options.BotScope), never narrower than asked except to the policy's
// limit, and never off: Clear is an admin operation, gated in
// internal/admin by the admin's second factor. LossGuard engages it when
// a token's (or a venue account's) accepted orders exceed a cap over a
// window, counting off the request path. Every lever — engage, clear,
// cancel, observed trips — is a durable audit action record with who
// (Actor), why (Reason, scrubbed of registered secrets) and what (Detail).
package killswitch
