// Package sandbox runs loopback emulators of the venues keystile supports
// (Stake, DMarket, Betfair, a STAPI-like OAuth 2.0 API and a "generic"
// HMAC venue), for the demo and for end-to-end tests.
//
// Security model: the sandbox is the independent judge of keystile's
// signers. Each emulator verifies authentication exactly as the venue
// documents it, with code written apart from internal/sign and
// internal/venue (which it must never import), so a signer bug shows up as
// a refused request rather than as two copies of the same mistake. Secrets
// are compared in constant time; credentials are random per start unless
// given. The emulators count every request, authentication failure, login
// and accepted order, so tests can prove what keystile did and did not send
// (an order that was refused by policy must never reach a venue; 200
// concurrent requests must cause one Betfair login). Faults (5xx, delays,
// resets before and after the request is processed, 429 with Retry-After,
// expired sessions) exercise keystile's retry rules, and the
// echo_credentials fault makes a venue reflect credential headers so tests
// can prove keystile scrubs responses. The sandbox prints its credentials in
// clear (Info): they are throwaway values and must never be real ones.
//
// Every venue has its own listener, so venue paths sit at the root as on the
// real host. Each listener also serves unauthenticated control endpoints
// under ControlPrefix (/-/sandbox/): GET stats, GET orders, GET/POST/DELETE
// faults. They are for loopback test use only.
//
// # Venues
//
// stake: POST /graphql with header x-access-token (64 hex). The operation is
// the GraphQL operationName, else the document's operation name, else its
// first field. Served: user balances (query user { balances { available {
// amount currency } } }), mutation sportBet (variables amount, currency,
// outcomeIds, odds, identifier = client order id), mutation cancelSportBet
// (betId), query user { activeSportBets { ... } }. Errors use the GraphQL
// shape {"data":null,"errors":[{"message":..,"errorType":"unauthorized"}]}
// with HTTP 200, as GraphQL servers answer resolver errors; only an
// unparsable body gets 400 (errorType parseFailed).
//
// dmarket: X-Api-Key (hex Ed25519 public key), X-Sign-Date (unix seconds,
// within 2 minutes), X-Request-Sign "dmar ed25519 <hex>" over METHOD + path
// (percent-decoded) + "?" + raw query (if any) + body + X-Sign-Date. Every
// endpoint, market items included, requires the signature. Errors: 401
// {"code":"Unauthorized"|"InvalidSignature"|"RequestExpired","message":..}.
//
// betfair: identity (/api/login, /api/certlogin, /api/keepAlive,
// /api/logout) and API-NG (REST under /exchange/betting/rest/v1.0/ and
// /exchange/account/rest/v1.0/, JSON-RPC at /exchange/betting/json-rpc/v1
// and /exchange/account/json-rpc/v1, batches included) on one listener:
// IdentityURL equals BaseURL. Identity answers are always JSON. certlogin
// needs TLS and the registered client certificate (recognised by its bytes,
// so a self-signed one given in Credentials works as on Betfair). Sessions
// last BetfairSessionTTL from login or the last keepAlive. More than
// BetfairLoginLimit logins in a minute answer TEMPORARY_BAN_TOO_MANY_REQUESTS.
// The app key is checked before the session (INVALID_APP_KEY, ANGX-0004,
// then INVALID_SESSION_INFORMATION, ANGX-0003). Orders are never
// deduplicated by customerRef, so a duplicate keystile let through is seen.
//
// stapi: X-STAPI-API-Key, or Authorization: Bearer from POST /oauth/token
// (grant_type client_credentials or refresh_token, client authenticated with
// HTTP Basic only, RFC 6749 §2.3.1; refresh tokens rotate). Errors: RFC 6749
// §5.2 on the token endpoint (401 invalid_client with WWW-Authenticate
// Basic), 401 {"error":"unauthorized"} with WWW-Authenticate Bearer
// elsewhere. POST /v1/videos is the "order"; its client id is client_ref or
// the Idempotency-Key header.
//
// # Exchanges
//
// binance, kraken, okx, bybit, coinbase: each emulator's file comment
// gives its signature scheme. Besides trading, each serves what an
// unmodified SDK (ccxt's loadMarkets, fetchBalance, createOrder,
// cancelOrder with their default options) reads, in the venue's documented
// answer shape: Binance /api/v3/exchangeInfo with its filters, /api/v3/ticker/24hr,
// /sapi/v1/capital/config/getall, /sapi/v1/margin/allPairs (API key, no
// signature), /sapi/v1/margin/isolated/allPairs, and the futures hosts'
// /fapi/v1/exchangeInfo and /dapi/v1/exchangeInfo on the same listener;
// Kraken /0/public/Assets, /0/public/AssetPairs and /0/private/BalanceEx;
// OKX /api/v5/public/instruments, /api/v5/asset/currencies and
// /api/v5/trade/batch-orders (up to 20 orders; code 0, 1 or 2 as all, some
// or none were placed); Bybit /v5/market/instruments-info,
// /v5/asset/coin/query-info, /v5/account/info and /v5/user/query-api;
// Coinbase /v2/currencies, /v2/currencies/crypto, /v2/exchange-rates and
// /api/v3/brokerage/market/products (and a product's ticker) without
// authentication, /v2/accounts,
// /api/v3/brokerage/transaction_summary, and accounts with their type and
// hold. Coinbase takes every claim set Coinbase takes (iss cdp or the
// legacy coinbase-cloud, aud, uri or uris).
//
// # The generic ("BetPro Exchange") scheme
//
// BetPro publishes no documentation, so keystile's configuration has to
// describe its scheme as a template; the emulator fixes it as:
//
//	X-API-KEY:   <api_key>
//	X-TIMESTAMP: <unix time in milliseconds>
//	X-SIGNATURE: lowercase hex( HMAC-SHA256( secret,
//	                 X-TIMESTAMP + METHOD + path + ["?" + query] + body ) )
//
// where path is the escaped path exactly as on the request line, query the
// raw query as sent (the "?" only when it is non-empty) and body the raw
// bytes (empty for GET/DELETE), concatenated with no separators. The
// timestamp must be within 30 s of the server clock. Endpoints: GET
// /api/v1/balance, GET /api/v1/markets, POST /api/v1/orders (JSON
// market_id, selection_id, side, price, size, client_order_id), DELETE
// /api/v1/orders/{id}, GET /api/v1/orders. Errors: 401
// {"error":{"code":"INVALID_SIGNATURE"|"INVALID_API_KEY"|"TIMESTAMP_EXPIRED"|"MISSING_AUTH","message":..}}.
package sandbox
