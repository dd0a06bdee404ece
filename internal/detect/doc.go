// Package detect is keystile's anomaly detector: it learns what each bot
// token usually does from the gateway's audit events and reports what it
// does not usually do, then acts (alert, throttle, freeze, kill).
//
// # Off the request path
//
// The Detector is an audit.Sink. Record copies the event into a bounded
// queue and returns: it never waits, so detection cannot slow or block a
// request. A full queue drops the event, counts it, and the queue_drops
// detector reports the loss (at most once per its window). One goroutine
// analyses the queue in order and owns every profile, so the analysis
// needs no locks. Sync waits for the queue to drain (tests, shutdown).
//
// # What is learned, and where it is kept
//
// A profile per token (bounded: detect.max_tokens profiles, the least
// recently active forgotten first; each map in a profile has a fixed cap)
// holds: orders per window and notional per window and per currency
// (logStat baselines), one order's usual size per currency or instrument,
// the instruments and venues used, an hour-of-week histogram of its
// orders, and the source addresses it used as keyed hashes (HMAC with a
// key the app derives from the vault). One more profile learns the hours
// of admin actions. Profiles hold token public ids, venue names,
// instruments, currencies, hours and counts: never a secret, a token or
// an address. They are saved to the store every detect.save_every and at
// Close, and loaded by New, so baselines survive restarts; a stored
// profile that does not decode or breaks a bound is ignored and relearned.
//
// # Baselines, warm-up and poisoning
//
// A logStat learns ln(value): sizes are multiplicative. Until a detector's
// warmup_events values are learned and warmup_time has passed since the
// token was first seen, the detector reports nothing. The baseline then
// starts from the median and the median absolute deviation of the last
// warm-up values (up to 32), so a few extreme values during warm-up do
// not set it; afterwards it is an exponentially weighted mean and
// variance (weight 0.05 per value). The usual value is
// exp(mean + 2·sd); a finding is raised when a value exceeds factor × usual.
//
// Against a baseline being walked up by a slow ramp: values that raised a
// finding are never learned (nor is a window that did), only allowed
// orders teach sizes, notionals, instruments and hours, and the usual
// value may rise by at most 1.5× per day of event time whatever is
// learned. A bot that grows its orders just under the limit therefore
// needs about log(10)/log(1.5) ≈ 6 days of steady ramping to make a 10×
// order look usual; a burst right after warm-up is judged against the
// warm-up median. The warm-up itself is trusted: a token that is
// compromised from its first request teaches its own baseline, which the
// threshold detectors (bursts, sensitive operations, two sources at once)
// and policies still bound.
//
// # Findings and actions
//
// A finding names its detector, severity, subject (token, venue, source
// hash, admin), a one-line summary and Evidence (observed value,
// baseline, threshold, factor, observations, triggering request ids). A
// detector reports one subject at most once per detect.cooldown (repeats
// are counted into the next report), and at most
// detect.max_actions_per_minute findings are acted on per minute overall.
// Each action is idempotent: alert goes to the Notifier (which must not
// block); throttle puts a temporary per-token rate limit in force; freeze
// freezes the token through the Responder; freeze_venue and
// freeze_credential refuse every request to a venue, or to every venue
// signing with a credential, until an admin releases them; kill trips the
// kill switch through the Responder. Each action writes a detect record
// to the audit log (Recorder) with the evidence as JSON.
//
// Throttles and freezes of venues and credentials are holds: stored,
// loaded at start, and enforced by the gateway before anything is signed
// through Admit, which reads an immutable snapshot and touches no store.
// Token freezes live in the token service and the kill switch in
// internal/killswitch, both behind the Responder.
package detect
