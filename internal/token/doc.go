// Package token issues and verifies keystile client tokens: the only
// credential a bot ever holds.
//
// A token is "kst_live_" or "kst_test_", 43 base62 characters carrying 32
// random bytes, and 6 base62 characters carrying the CRC-32 of those 43, so
// that Parse and LooksValid can recognise one offline (the leak scanner
// uses them). The raw token is returned once, by Service.Create or
// Service.Rotate, as a secret.Value; keystile keeps only the SHA-256 digest
// of the token string and a public id ("tok_..." ) used for display,
// listing, rotation, freezing and revocation.
//
// Security model:
//   - A stolen database yields digests of 256-bit random tokens, which
//     cannot be reversed or guessed; the store never sees a token.
//   - Verify never touches the store: a complete in-memory index, updated
//     by every mutation of the Service before the mutation returns, answers
//     it, so a revoked or frozen token is refused on the very next request.
//     Reload picks up other replicas' changes.
//   - Unknown tokens take the same path as known ones: the digest lookup is
//     followed by a constant-time compare (against a random dummy digest
//     when not found) and the same checks, with no early return.
//   - A token is bounded in time (expiry required, at most a maximum
//     TTL), place (source CIDRs), target (venues, and live vs test
//     endpoints) and action (scopes). Scope wildcards never grant wallet.
//     or apikey. operations: those must be named exactly.
//   - Rotation keeps the old token valid for an explicit grace period;
//     revocation has none. Errors and logs carry the public id, never the
//     token.
package token
