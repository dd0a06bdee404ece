// Package bybit is the Bybit (API v5) venue: HMAC-SHA256 request signatures
// with a receive window.
//
// Each private request carries X-BAPI-API-KEY, X-BAPI-TIMESTAMP (unix
// milliseconds), X-BAPI-RECV-WINDOW (milliseconds, default 5000),
// X-BAPI-SIGN-TYPE 2 and X-BAPI-SIGN: the lower-case hex of
// HMAC-SHA256(secret, timestamp + api_key + recv_window + payload), where
// payload is the raw query string as sent for GET (and DELETE) and the exact
// JSON body for POST. Bybit accepts a request when
// server_time - recv_window <= timestamp < server_time + 1000 (else retCode
// 10002).
//
// Security model. keystile holds api_key and secret; the bot never sees
// them. Authenticate removes every X-BAPI-* credential header the bot sent
// (an unmodified SDK sends its key, timestamp, receive window and a
// signature made with a placeholder secret), chooses timestamp and receive
// window itself and signs the exact query or body that goes on the wire. A
// bot using a Bybit SDK (pybit, bybit-api, ccxt) puts its kst_ token as the
// API key, so it arrives in X-BAPI-API-KEY, where BotToken reads it.
//
// Endpoints. Live: https://api.bybit.com (also api.bytick.com). Testnet:
// https://api-testnet.bybit.com (a separate host with its own keys, so
// venue.TestEndpoint changes nothing in the request). Batch placement
// (/v5/order/create-batch) and amendment (/v5/order/amend) are not in the
// operations table: they cannot be normalized into one order, so they are
// denied unless a policy allows them by name.
//
// Rate limits. Bybit reports per-endpoint usage on every private answer:
// X-Bapi-Limit (requests per window), X-Bapi-Limit-Status (requests left)
// and X-Bapi-Limit-Reset-Timestamp (unix ms when the window resets). The
// RateLimiter refuses an operation while it has 5% or less of its limit left
// until that reset, and backs off after HTTP 429 (Retry-After, or 1 s).
// retCode 10006 ("Too many visits") comes with X-Bapi-Limit-Status 0, which
// the same rule catches.
package bybit
