-- Pending items of alert sinks' daily digests (internal/alert). One row per
-- alert waiting for its sink's next digest; a row is removed once a digest
-- carrying it has been delivered. alert is the JSON of alert.Alert, already
-- scrubbed of secrets and client tokens before it was stored (it names
-- token public ids, venues and credential names, like the audit log).
-- created_at is the alert's time, Unix nanoseconds.
CREATE TABLE alert_digest (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	sink       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	alert      TEXT    NOT NULL
);
CREATE INDEX alert_digest_sink ON alert_digest (sink, seq);
