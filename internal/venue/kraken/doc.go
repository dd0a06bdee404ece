// Package kraken is the Kraken spot REST venue: HMAC-SHA512 request
// signatures over a nonce keystile owns.
//
// Private endpoints are POST /0/private/<Method> with a form body. Each
// carries API-Key (the public key) and API-Sign =
// base64(HMAC-SHA512(base64decode(secret), uri_path + SHA256(nonce +
// postdata))), where postdata is the exact form body sent and nonce its
// "nonce" field. Public endpoints (/0/public/*) carry no credential.
//
// Endpoints: live https://api.kraken.com. Kraken has no spot REST test
// host (its demo environment covers futures only), so a kst_test_ token
// cannot be pointed at a Kraken test endpoint: use the sandbox emulator.
//
// Security model: the bot never holds the API key or secret. Authenticate
// removes whatever the bot's SDK put in the body (its nonce), and the
// gateway strips the API-Key and API-Sign headers (CredentialHeaders); a bot
// using an unmodified Kraken SDK sends its kst_ token as API-Key and any
// base64 placeholder as secret (BotToken finds the token there). keystile
// then sets its own nonce as the first form field, rewrites the body
// (out.Body, ContentLength, GetBody agree with the signed bytes) and signs.
//
// Nonces must strictly increase per API key, across concurrent requests and
// across restarts, or Kraken answers "EAPI:Invalid nonce". A Venue keeps an
// in-memory counter per key (keys are identified by a SHA-256 prefix of the
// API key, never the key itself) seeded from max(unix microseconds,
// persisted high-water mark); before handing out a nonce beyond its
// reservation it persists a new high-water mark a block ahead through the
// NonceStore, so a restarted process always starts above every nonce the
// previous one could have used. Without a NonceStore the counter follows the
// wall clock in microseconds (safe across restarts only if the clock does
// not step back). Two processes sharing one key at the same time cannot be
// made monotonic by any client: give each its own key.
//
// Requests are read for policy before signing: Normalize extracts the order
// fields of AddOrder (pair, type, ordertype, volume, price, cl_ord_id or
// userref); GetWebSocketsToken is classified apikey.manage because the token
// it returns lets its holder trade over WebSocket outside keystile.
package kraken
