// Package audit defines the event that every gateway decision produces and
// the sinks that receive it.
//
// Security model: an Event carries identifiers (token public id, request
// id, venue, operation), the decision and the rule that made it, the
// upstream status and timing: never a token, a credential, a signature or a
// request body. The tamper-evident, hash-chained durable log that consumes
// these events comes in a later step; today's sink writes them to the
// structured log.
package audit
