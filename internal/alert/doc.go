// Package alert tells people when keystile notices something: it carries
// an Alert (what was detected, about which token, venue or credential, the
// non-secret evidence and a suggested action) from the code that raised it
// to every configured sink — a signed webhook, Slack, Telegram, ntfy or
// e-mail (the implementations live in the subpackages).
//
// The Dispatcher is built so that alerting can never hurt the request
// path, and so that nothing is silently lost:
//
//   - Send never blocks: it puts the alert on a bounded queue and returns.
//     A full queue drops the alert and counts it; each sink is told how many
//     alerts were dropped as soon as its delivery recovers.
//   - One worker per sink delivers in order, retrying with jittered
//     exponential backoff (honouring a sink's Retry-After, capped). A sink
//     that stalls or fails only fills its own queue; it never delays Send or
//     the other sinks. Every delivery of one alert, retries included, carries
//     the same idempotency id (Alert.ID).
//   - Alerts are deduplicated and rate-limited per (detector, subject):
//     repeats are counted and summarised in the next message for that pair
//     (Alert.Count, Alert.FirstSeen), never dropped without a trace. An alert
//     more severe than the last one sent for its pair goes out at once.
//   - A sink may batch low-severity alerts into a daily digest at a local
//     time of day. Pending digest items are kept in a DigestStore (the
//     server's SQLite database), so they survive restarts.
//
// Its part of the security model: no alert carries a secret or a full kst_
// client token. Send passes every text field through a Scrubber (the
// server's logging.Redactor, which knows every credential value the vault
// has opened and masks kst_ tokens) before anything is queued, stored or
// rendered; evidence under a credential-like key is replaced by REDACTED;
// control characters are removed and lengths bounded, so a hostile value
// cannot forge lines or headers in a message. Sink credentials (webhook
// keys, Slack URLs, bot tokens, SMTP passwords) are secret references
// resolved by the app, and errors from HTTP sinks never include the URL
// (a Slack webhook URL or a Telegram bot token is the credential).
package alert
