// Package policy decides, before anything is signed, whether a bot's
// request may go out: it compiles the policies: section of keystile.yaml
// into an immutable Set and evaluates each request against the policy of
// the request's token.
//
// # Security model
//
// The engine is the last check between a (possibly compromised) bot and a
// signed request. It fails closed everywhere: an unknown policy, an order
// the venue could not read, a notional that cannot be computed, a missing
// reference price for a price band, a CEL evaluation error or a budget
// store failure all deny. Withdrawals, transfers and API-key management
// (any wallet.* or apikey.* operation) are never enabled by a glob; a
// policy must name them literally. Amounts are decimals (never floats),
// always with their currency; an order whose quote currency has no limit
// is denied rather than compared against a limit in another currency.
//
// An order is charged at the worst price it may fill at, never at a price
// the bot chose that the venue ignores: its base quantity times the
// highest of its limit, trigger and leg prices, and of the venue's
// reference price (PriceSource) for orders that execute at the market or
// sell; a size the venue may read in either currency is charged at the
// larger reading (see venue.Order). The property tests check, for orders
// drawn from each exchange's documented parameters, that the charge is
// never below what the venue would fill at the reference price.
//
// Every denial names its rule (policy.<name>.<rule>, e.g.
// policy.scalper.max_notional) so that the bot and the audit log see why;
// the Reason is internal detail for the log and never holds a secret.
//
// # Budgets and rate limits
//
// Notional budgets (rolling windows or calendar days, per token or per
// venue account) are reserved in a BudgetStore before the request is
// forwarded — all claims of a request in one transaction, all or none —
// and released only when the venue definitely rejected the order or
// nothing was sent (Hold.Release); on success or an unknown outcome they
// are kept. The gateway evaluates with Input.DeferBudget: the reservation
// (Decision.Budget) is then made by the ledger in the order's one durable
// write, and Reservation.Hold and Reservation.Deny turn its result into
// the same Hold or denial. Rate limits are in-memory token buckets per token and per
// account. A dry run (keystile policy explain) reserves nothing and
// consumes no rate tokens.
//
// # Reloading
//
// Engine.Load swaps the compiled Set atomically; Watch reloads the file on
// SIGHUP or when it changes, and keeps the old Set (logging why) when the
// new file does not compile.
package policy
