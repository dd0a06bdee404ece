// Package ledger is the durable state of a write request before it is
// forwarded: its intent record, the budget it reserves and the idempotency
// key it claims, made durable as one write.
//
// # One write per order
//
// An order placement under a policy with a budget and an idempotency key
// used to wait for three durable writes: the budget reservation and the
// key's claim (one commit of the main database) and then the intent record
// (a commit of the audit log). Store.Open makes all three one atomic write,
// group-committed with the other orders in flight: in the embedded store
// one transaction of the main database, in which the audit log is kept
// (store/sqlite); in PostgreSQL one transaction per batch of a replica's
// orders, appending to the one audit chain all replicas share
// (store/postgres).
//
// Open checks before it writes, in this order: every budget claim must fit
// under its limit (else *policy.ExceededError: the policy's answer comes
// first, so a refused order claims no key), then the key must be free
// (else ErrKeyTaken, with the record stored under it). Either refusal
// writes nothing.
//
// # Settlement
//
// How the request ended is written later, without making the bot wait,
// through the stores' own interfaces: the answer stored for replays
// (idem.Ticket.DoneLater), the budget given back when the venue rejected
// the order or nothing was sent (policy.Hold.Release), the outcome record
// (audit.Sink). Each is crash-safe on its own: after kill -9 before it is
// durable, the key is still pending (a repeat is an unknown outcome: looked
// up at the venue, never re-sent blindly), the budget stays reserved (a
// limit can only be under-used, never exceeded) and the intent record
// stands without its outcome. Nothing else is kept in memory that is not
// rebuilt from the store at start.
package ledger
