// Package sign holds the reusable request-signing schemes keystile applies to
// each outbound request just before it is sent: static header keys, bearer
// tokens, HTTP Basic (RFC 7617), a query-parameter key, a generic HMAC
// template for venues described in configuration, Ed25519 (RFC 8032), HTTP
// Message Signatures (RFC 9421, with RFC 9530 Content-Digest), AWS
// Signature Version 4, and compact JWTs (ES256, EdDSA) for venues that want
// a fresh signed token per request (Coinbase Advanced Trade).
//
// Security model. The signers are the only code that sees venue key bytes
// outside the vault, and only for the duration of one call made inside
// vault.WithCredential. To keep that exposure small they are pure functions:
// they take the request, the exact body bytes that will be sent, the key
// material as secret.Value and the time (and nonce) chosen by keystile; they
// never read clocks, environment or files, never log, and never keep key
// bytes after returning. They sign the exact bytes that go on the wire: the
// escaped path and raw query as sent (query parameters are never reordered,
// except where a scheme such as SigV4 defines its own canonical form that the
// server rebuilds identically) and the final body, so a bot cannot get one
// thing signed and another sent.
//
// No error returned by this package contains key bytes, in any encoding: key
// decoding failures are reported with fixed messages and the underlying
// decoder errors (which may quote offending characters) are dropped. Header
// values are checked for CR, LF and NUL so a credential cannot be used to
// inject headers. Signature values themselves are not secret, but callers
// should still treat the headers this package writes as credentials when
// logging (see STYLE.md rule 14).
package sign
