// Package upstream is the only transport from keystile to the internet.
//
// Every request the gateway forwards to a venue, and every login or token
// call a session makes, leaves through a Transport built by New. Its part of
// the security model is to make the outbound side hard to misuse:
//
//   - Only the venue's configured hosts can be reached. The host is checked
//     twice: in RoundTrip before anything is dialled (scheme, URL host and
//     Host header), and again in the dialer for the exact address the
//     connection pool asks for. A name is resolved once per connection and
//     the resolved IP is dialled, so DNS rebinding cannot swap the address
//     between the check and the dial.
//   - HTTPS only, certificate verification always on (there is no way to
//     turn it off), TLS 1.2 or newer. Plain http:// is refused, except for a
//     sandbox venue (Options.AllowPlainHTTPLoopback) and then only when every
//     dialled address is a loopback address.
//   - No proxy from the environment (HTTPS_PROXY and friends are ignored): a
//     proxy would see the signed requests.
//   - Timeouts on connect, TLS handshake, response headers and the whole
//     exchange; pooled keep-alive connections with a large idle pool.
//   - Transport and the Retrier never follow redirects (RoundTrippers do
//     not), so a venue's 3xx answer is returned to the bot as is and the
//     signed request never reaches another host. Transport.Client, meant for
//     login and token calls, follows same-origin redirects only and drops
//     every credential-bearing header and body on the way.
//
// Retries live in a separate RoundTripper (NewRetrier) that wraps the signer,
// so each attempt is signed afresh (new timestamp, nonce and signature). A
// write (POST, PUT, PATCH, DELETE) is retried only when it provably never
// left: the failure happened while dialling or during the TLS handshake. Once
// request bytes may have been written, a failure is reported as an
// *UnknownOutcomeError and the request is never sent again; the gateway
// answers 504 and the bot must check the order state. Go's own transport
// re-sends a request carrying an Idempotency-Key header on a dead keep-alive
// connection; Transport defeats that for writes (see RoundTrip).
//
// Errors never contain the request URL's query or body, where venue
// signatures and credentials live: they name the method and host only.
package upstream
