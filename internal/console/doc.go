// Package console is keystile's web console for operators: a separate
// listener (console.listen, off by default) serving server-rendered pages
// over the running server — live traffic per venue and bot, tokens,
// credentials' metadata, policies (with a dry-run explain), budgets, the
// audit log and its chain verification, alerts and detectors, and the
// kill switch.
//
// Security model:
//
//   - The listener: loopback only unless TLS is configured (New refuses a
//     plain listener off loopback); the allow list (console.allow_cidrs)
//     closes other clients' connections at accept, before TLS or HTTP.
//   - Log-in: an admin bearer token of admin.tokens (compared by SHA-256
//     in constant time) and, once a second factor is enrolled, a TOTP or
//     recovery code, which buys an admin MFA session held on the server,
//     never in the browser. Failed log-ins are limited per source
//     address (an IPv6 client by its /64).
//   - Sessions: a random cookie (only its SHA-256 is kept), HttpOnly,
//     SameSite=Strict, Secure and __Host- prefixed over TLS; an absolute
//     lifetime and an idle timeout (live updates do not count as
//     activity); bounded in number; ended by log-out.
//   - Requests: every form carries the session's CSRF token, checked on
//     every non-GET request, behind net/http's cross-origin protection
//     (Sec-Fetch-Site, Origin). The Content-Security-Policy allows only
//     the console's own embedded script and stylesheet (no inline script
//     or style), forbids framing and posting elsewhere.
//   - Actions go through the admin API in process (admin.Server.InProcess):
//     the same route table, second-factor gate (RequireMFA) and audit
//     record as the CLI's call, under the principal "console:<token
//     name>". The kill switch, which the admin API does not serve yet,
//     asks for a fresh TOTP code itself (mfa.Manager.Authorize with
//     RequireCode) and writes its own audit record; so do log-in and
//     log-out.
//   - Secrets: pages show metadata only. A minted token appears once, in
//     the answer to the request that minted it, and in no other page,
//     fragment or log line. Error messages shown are the admin API's
//     operator messages or fixed text with a request id.
//   - The request path: the gateway hands each event to Stats (an
//     audit.Sink) through a bounded channel that drops rather than
//     blocks; memory is bounded (HistorySeconds, MaxKeys, MaxSeenTokens).
package console
