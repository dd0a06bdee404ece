// Package idem makes order placements idempotent: a bot that repeats a
// request (same Idempotency-Key, or the same client order id) within the
// window gets the first answer again instead of placing a second order.
//
// # Model
//
// Every order placement is claimed under a Key (the token's public id and
// the venue, plus the bot's Idempotency-Key or client order id) before
// anything is signed. The claim is durable: a row in the Store in state
// pending. Then exactly one of three things happens to the Ticket:
//
//   - Done: the venue answered (any status). The answer the bot got (already
//     scrubbed of credentials) is stored and replayed to later requests with
//     the same key until the window ends. DoneLater is Done for callers that
//     answer the bot at once: waiters and later Begins in this process get
//     the answer from memory immediately and the store is written in the
//     background (a crash before it is durable leaves the row pending,
//     treated like Unknown below).
//   - Unknown: the request bytes may have reached the venue but no answer
//     came back (timeout, reset). keystile never resends such a request
//     blindly: later requests with the key get an UnknownError naming the
//     client order id, and the gateway looks the order up at the venue
//     (venue.OrderLookup) before it Resolves the key (order found) or
//     Reopens it (the venue says definitively that there is no such order).
//   - Abort: nothing was sent (policy denied, failure before writing): the
//     key is forgotten and may be used again.
//
// The gateway stores the claim in the order's one durable write (the
// ledger, with its budget reservation and intent record): Prepare gives
// the Ticket without writing, and Taken or Forget end it when that write
// found the key taken or stored nothing. A LaterStore (the SQLite store)
// takes DoneLater's answer onto its queue without a goroutine.
//
// A pending row without a live Ticket in this process (a crash, or another
// process sharing the store) is treated like Unknown: the order may have
// left. Reopen refuses such a row until it is older than
// Options.PendingTimeout, so that an order still in flight elsewhere is
// never sent twice.
//
// A key reused for a different order (another fingerprint: the normalized
// instrument, side, type, amounts, not the raw body, which SDKs re-sign with
// fresh timestamps) is refused with ErrKeyReused.
//
// # Client order ids
//
// For a bot that sends an Idempotency-Key but no client order id, keystile
// derives one: Seed is HMAC-SHA256 under a key from the vault
// (vault.DeriveKey("idem.v1")) of the scope and the key, and the venue
// formats it (venue.ClientOrderIDs). The id is stable across restarts, so a
// retried request carries the same id and the venue's own duplicate check
// backs keystile's; it reveals nothing about the key to the venue.
//
// Stored answers are capped (Options.MaxBody); headers are reduced to a
// safe subset (Content-Type, Content-Language). Rows older than the window
// are pruned when their key is claimed again and periodically.
package idem
