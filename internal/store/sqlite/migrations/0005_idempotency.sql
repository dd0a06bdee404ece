-- Idempotency keys (internal/idem). One row per (scope, key): scope is a
-- token's public id and a venue, key the bot's Idempotency-Key or client
-- order id. fingerprint hashes the normalized order; owner names the claim
-- (compare-and-swap); state is pending, done or unknown. A done row holds
-- the answer the bot got (already scrubbed of credentials, capped in size)
-- for replays. Times are Unix nanoseconds.
CREATE TABLE idempotency (
	scope           TEXT    NOT NULL,
	key             TEXT    NOT NULL,
	fingerprint     BLOB    NOT NULL,
	client_order_id TEXT    NOT NULL,
	state           TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'unknown')),
	owner           TEXT    NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	status          INTEGER NOT NULL DEFAULT 0,
	header          TEXT    NOT NULL DEFAULT '{}',
	body            BLOB,
	body_dropped    INTEGER NOT NULL DEFAULT 0,
	venue_order_id  TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
