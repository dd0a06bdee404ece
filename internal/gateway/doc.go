// Package gateway is the bot-facing HTTP handler: keystile's main job.
//
// A bot calls http://127.0.0.1:7878/<venue>/<venue path> with only its
// kst_ token (Authorization: Bearer, or Keystile-Token). Each request goes
// through a list of named stages (stages.go, Gateway.run), each a small
// function over the request's state: route (the venue by the first path
// segment; malformed paths — dot segments, encoded slashes — refused),
// authenticate (the token: format, digest lookup, expiry, revocation,
// freeze, venue, source CIDR, live/test binding), endpoint, readBody (under
// a size limit), classify (the operation from the venue's table; an
// unmapped route or one outside the token's scopes refused), authorize
// (the venue's rate limits), decide (the policy; an order's idempotency
// key), open (one durable write, Options.Ledger: the intent record of a
// write, the budget an order reserves and the key it claims) — all before
// anything is signed — then forward; settle and finish (the audit event)
// end every request. Then, in forward, an httputil.ReverseProxy
// (Rewrite, never Director) forwards it: our own headers, any credential
// headers the bot sent, and forwarding headers are stripped; a signing
// RoundTripper clones the request and has the venue authenticate the exact
// bytes (once per attempt, inside vault.WithCredential); the upstream
// transport (HTTPS only, allowlisted hosts, timeouts, safe retries) sends it.
//
// Answers are scrubbed (scrub.go): every registered secret value and every
// secret header value keystile itself sent (keys, signatures, passphrases,
// session tokens; not the timestamps and nonces a venue declares public
// with venue.PublicHeaders) is replaced in response headers and bodies —
// in any letter case, behind JSON escapes, and as long fragments — so a
// venue that echoes a credential cannot leak it to the bot. A valid JSON
// answer stays valid JSON.
// Errors reach the bot as {status, fixed public message, request id}; the
// detail goes to the log under the same Keystile-Request-Id. Every request,
// allowed or refused, produces one audit.Event.
package gateway
