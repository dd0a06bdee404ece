// Package session obtains, caches, refreshes and injects short-lived
// session credentials for venues that authenticate by logging in (Betfair
// login and certlogin) or with OAuth 2.0 access tokens.
//
// Security model: a session source never holds long-term credentials. It
// receives a CredentialFunc and calls it only when it must log in or refresh;
// the username, password, client certificate key, client secret and refresh
// token are used inside that call and dropped (request bodies built from them
// are wiped best-effort afterwards). What the source keeps is the session or
// access token, in a secret.Value, which every textual form prints as
// REDACTED. Errors carry venue or RFC 6749 error codes that are checked
// against a strict character set, and server-supplied descriptions are
// scrubbed of the secrets that were sent, so neither the password nor the
// client secret can reach a log or a bot through an error.
//
// Refreshing is single-flight: however many callers ask for a token while
// none is valid, exactly one login or refresh runs, and the others wait for
// its result. Invalidate marks one exact token stale, so N requests that all
// saw the same expired-session answer cause a single re-login. Betfair logins
// are also rate-bounded (Betfair bans accounts that log in too often), and a
// caller over the bound gets a RateLimitedError instead of another attempt.
//
// The HTTP clients used for identity and token endpoints are passed in: the
// upstream package owns outbound transport. AuthorizationCodeFlow runs the
// authorization code grant with PKCE (RFC 7636, S256 only) through a
// loopback redirect (RFC 8252) for the command line, checking state in
// constant time and accepting exactly one callback.
package session
