// Package coinbase is the Coinbase Advanced Trade venue: a fresh JWT per
// request (CDP API keys, ES256 or EdDSA).
//
// Each request carries Authorization: Bearer <jwt>, a compact JWS whose
// header is {"alg":"ES256"|"EdDSA","kid":key_name,"nonce":<random hex>,
// "typ":"JWT"} and whose claims are {"sub":key_name,"iss":"cdp","nbf":now,
// "exp":now+120,"uri":"METHOD host/path"} (the query is not part of uri).
// The credential holds key_name (organizations/{org}/apiKeys/{key}) and
// private_key: a P-256 key as PEM ("EC PRIVATE KEY" or PKCS#8) for ES256,
// or an Ed25519 key (the base64 of 64 bytes CDP shows, or PKCS#8 PEM) for
// EdDSA.
//
// Security model. keystile holds the private key; the bot never does.
// Every attempt gets a new JWT with a new random nonce, signed for the exact
// method, host and path that go on the wire and valid for 120 seconds, so a
// token captured in transit is useless for any other request or after two
// minutes. The official SDKs (coinbase-advanced-py, ccxt) build their own
// JWT: configured with the kst_ token as the API key name and any P-256 or
// Ed25519 key as placeholder secret, they send a JWT whose kid and sub are
// the kst_ token. BotToken reads (without verifying: keystile is not the
// audience of that JWT, and the kst_ token is checked on its own) the sub or
// kid claim from that bearer JWT; the gateway strips Authorization and
// Authenticate signs afresh.
//
// Classification looks at the body of POST /v2/accounts/{id}/transactions:
// "type":"transfer" is wallet.transfer, anything else ("send", "request",
// or an unreadable body) wallet.withdraw. Coinbase has no cancel-all
// endpoint: cancellations go through /orders/batch_cancel (order.cancel).
// GET /api/v3/brokerage/key_permissions only reads the key's own scopes, so
// it is account.read; Advanced Trade has no API to create or change keys.
//
// Endpoints. Live: https://api.coinbase.com. Sandbox: the static Advanced
// Trade sandbox https://api-sandbox.coinbase.com (mocked answers; it ignores
// authentication), so test tokens exercise routing and policy only.
//
// Rate limits (published): private endpoints 30 requests per second, public
// 10 per second per IP. Coinbase sends no usage headers, so the RateLimiter
// counts keystile's own requests per second (refusing within 5% of the
// limit) and backs off after HTTP 429 (Retry-After, or 1 s).
package coinbase
