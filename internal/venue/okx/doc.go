// Package okx is the OKX (API v5) venue: HMAC-SHA256 request signatures with
// a passphrase.
//
// Each private request carries OK-ACCESS-KEY, OK-ACCESS-PASSPHRASE,
// OK-ACCESS-TIMESTAMP (ISO-8601 UTC with milliseconds, e.g.
// 2020-12-08T09:08:57.715Z) and OK-ACCESS-SIGN: the base64 of
// HMAC-SHA256(secret, timestamp + METHOD + requestPath + body), where
// requestPath is the escaped path plus "?" and the raw query when there is
// one, and body the exact JSON bytes sent (empty for GET). OKX refuses a
// timestamp more than 30 seconds from its clock (code 50102).
//
// Security model. keystile holds api_key, secret and passphrase; the bot
// never sees them. Authenticate removes every OK-ACCESS-* header the bot
// sent (an unmodified SDK sends its own key, timestamp, passphrase and a
// signature made with a placeholder secret), picks the timestamp itself and
// signs the exact path, query and body that go on the wire, so a bot cannot
// get one request signed and another sent. The x-simulated-trading header
// is keystile's too: it is set to 1 for kst_test_ tokens
// (venue.TestEndpoint) and removed otherwise, so a live token cannot be
// pointed at the demo account nor a test token at the live one. A bot using
// an OKX SDK puts its kst_ token in OK-ACCESS-KEY (BotToken reads it there)
// and any placeholder as secret and passphrase.
//
// Endpoints. Live: https://www.okx.com (also https://my.okx.com, https://app.okx.com
// by region). Demo trading: the same host with x-simulated-trading: 1 and a
// demo API key. Batch order placement (/api/v5/trade/batch-orders) is not in
// the operations table on purpose: a batch cannot be normalized into one
// order for policy, so it is denied unless a policy allows it by name.
//
// Rate limits are per endpoint and per 2 seconds (order placement 60,
// cancellation 60, cancel-batch 300, pending orders 60, balance 10, ticker
// 20, withdrawal 6 per second, transfer 1 per second). OKX sends no usage
// headers, so the RateLimiter counts keystile's own requests per operation
// and backs off after an HTTP 429 (code 50011).
package okx
