// Package fwdproxy is keystile's forward-proxy listener: the second way in
// for a bot, for SDKs that cannot change their base URL. The bot runs with
// HTTPS_PROXY=http://keystile:kst_...@127.0.0.1:7879 and trusts keystile's local CA
// (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE); its SDK keeps
// the venue's real URLs.
//
// Security model:
//
//   - Only CONNECT to the host:port of a configured venue's base URL (live
//     or test) is accepted. Anything else is refused with 403 before any
//     outbound connection exists; keystile never dials the CONNECT target
//     at all: it terminates the tunnel's TLS itself, with a leaf from the
//     local CA for exactly that host, and every request inside goes out
//     through the gateway's upstream transport, which reaches only the
//     venue's configured hosts. Nothing is ever tunnelled blind.
//   - The CONNECT must carry the bot's kst_ token in Proxy-Authorization
//     (Basic with the token as the password or as the user name, as
//     HTTPS_PROXY userinfo makes clients send, or Bearer); without a valid one it gets 407, and
//     failures count against the same per-source limit as the gateway's.
//     The tunnel is bound to that token, to the venue the host names (a
//     host served by several venues is resolved by the token's venues) and
//     to that host: a request inside naming another Host gets 421.
//   - Each request inside the tunnel is rewritten into the reverse-proxy
//     form /<venue>/<path> and handed to the gateway's handler with the
//     tunnel's token in its context (gateway.WithTunnelToken): the same
//     pipeline runs as for the reverse proxy (token re-verified on every
//     request, so a revocation or freeze applies from the next request;
//     scopes, policy, idempotency, audit, re-signing with the SDK's own key
//     headers and signatures dropped). Public market data goes out
//     unsigned, as the venue serves it to anyone.
//   - keystile's own refusals are rendered in the venue's error format
//     (venue.ErrorShaper) so that an unmodified SDK raises its usual
//     exchange error; the request id stays in Keystile-Request-Id.
//   - Plain-HTTP proxy requests (absolute-form GET http://host/...) are
//     refused with 403: credentials would travel in clear and nothing could
//     be signed.
//
// The CONNECT request itself (with the token) is plain HTTP: keep the
// listener on loopback (keystile doctor warns otherwise).
package fwdproxy
