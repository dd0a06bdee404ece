-- Client tokens (internal/token). Only the SHA-256 digest of a token is
-- stored, never the token. Times are Unix nanoseconds, 0 = unset. Venues,
-- scopes and source CIDRs are JSON arrays of strings.
CREATE TABLE tokens (
	id           TEXT    PRIMARY KEY,
	digest       BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
	name         TEXT    NOT NULL,
	policy       TEXT    NOT NULL DEFAULT '',
	venues       TEXT    NOT NULL,
	scopes       TEXT    NOT NULL,
	cidrs        TEXT    NOT NULL DEFAULT '[]',
	test         INTEGER NOT NULL DEFAULT 0,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0,
	revoked_at   INTEGER NOT NULL DEFAULT 0,
	frozen_at    INTEGER NOT NULL DEFAULT 0,
	grace_until  INTEGER NOT NULL DEFAULT 0,
	rotated_from TEXT    NOT NULL DEFAULT '',
	rotated_to   TEXT    NOT NULL DEFAULT ''
);
