// Package binance is the Binance spot venue: HMAC-SHA256 or Ed25519
// signatures over the parameters exactly as sent.
//
// SIGNED endpoints (/api/v3 trading and account, /sapi) carry X-MBX-APIKEY
// and the parameters timestamp (milliseconds, corrected by the measured
// offset of the server clock) and recvWindow, both set by keystile, with
// signature appended last to the query. signature is hex HMAC-SHA256 of
// the query (without signature) concatenated with the form body, no
// separator, parameters in the order sent and non-ASCII bytes
// percent-encoded; with an Ed25519 key (credential field private_key) it is
// the base64 Ed25519 signature of the same bytes, percent-encoded. Market
// data and user-data-stream endpoints carry only X-MBX-APIKEY.
//
// Endpoints: live https://api.binance.com (also api1..api4.binance.com);
// test https://testnet.binance.vision (spot testnet, its own keys). The
// server clock offset is read from GET /api/v3/time on the venue's own
// base URL (Options.BaseURL, else the host of the request being signed)
// through Options.HTTPClient, and refreshed every Options.ClockSync.
//
// Security model: the bot never holds the API key or secret. The gateway
// strips X-MBX-APIKEY (CredentialHeaders) after BotToken has read the
// bot's kst_ token from it (an unmodified Binance SDK or ccxt puts its
// "apiKey" there and signs with any placeholder secret). Authenticate then
// removes the bot's signature, timestamp and recvWindow from the query and
// the form body — so a bot cannot replay or pre-date a request — and signs
// afresh; the body is rewritten (out.Body, ContentLength, GetBody) only when
// it had to change. The RateLimiter refuses requests within 5% of the
// published limits (6000 weight per minute, 100 orders per 10 s, 200000
// per day, read from X-MBX-USED-WEIGHT-1M and X-MBX-ORDER-COUNT-*) and
// during a 429/418 back-off, so one bot cannot get the shared key banned.
package binance
