// Package mfa is keystile's second factor for administrators: TOTP codes
// (RFC 6238) from an authenticator app, one-time recovery codes for a lost
// device, and short-lived admin sessions bought with one code.
//
// Security model:
//
//   - The TOTP secret lives only in the vault (credential SecretName, field
//     SecretField), sealed like every venue credential; it is opened for
//     each check inside vault.WithCredential and never returned by any
//     method. The CLI generates it and sends it once over the admin
//     socket, so no admin endpoint ever answers with it.
//   - Recovery codes are stored as HMAC-SHA256 digests under a key derived
//     from the vault (a copy of the database without the master key cannot
//     test guesses offline); each is accepted once.
//   - A code is accepted for the time step before, at or after now (±30 s)
//     and only for a step later than the last one accepted, which is
//     persisted in the store: a code, once used, is refused again, also
//     after a restart and by another process sharing the database.
//   - Wrong codes are counted in the store. After Options.MaxFailures in a
//     row every attempt waits for a lockout that doubles per failure up to
//     Options.MaxLockout; while locked, codes are not even checked, so the
//     lockout gives no oracle. A good code clears the count.
//   - Sessions are random 256-bit tokens held by the server only as SHA-256
//     digests, in memory (a restart ends them), bound to the principal that
//     logged in (a socket peer's uid, an admin bearer token's name) and
//     expiring after Options.SessionTTL. A session cannot buy another one:
//     Login takes a code.
//   - Every enrolment, check, failure, replay, lockout, session, recovery
//     code use and reset is an audit event; no event, log line or error
//     carries a secret, a code or a session token.
//
// Whoever holds the master key and the data directory can open the vault
// without the server and so can clear the enrolment (ResetOffline): that is
// the break-glass path for a lost device, and the reason the admin second
// factor is only as strong as the master-key source.
package mfa
