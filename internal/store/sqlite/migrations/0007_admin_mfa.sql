-- Admin second factor (internal/mfa). One enrolment per server, the row
-- with id 1. The TOTP secret is in the vault (credential
-- keystile.admin-mfa), never here. last_step is the last TOTP time step
-- accepted; only later steps are, so a code used once is refused again,
-- across restarts too. failures/locked_until rate-limit wrong codes.
-- Recovery codes are HMAC-SHA256 digests under a key derived from the
-- vault; used_at marks one spent. Times are Unix nanoseconds, 0 = unset.
CREATE TABLE mfa_enrollment (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	state        TEXT    NOT NULL CHECK (state IN ('pending', 'active')),
	created_at   INTEGER NOT NULL,
	enrolled_at  INTEGER NOT NULL DEFAULT 0,
	last_step    INTEGER NOT NULL DEFAULT 0 CHECK (last_step >= 0),
	failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
	last_failure INTEGER NOT NULL DEFAULT 0,
	locked_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE mfa_recovery_codes (
	digest  BLOB    PRIMARY KEY CHECK (length(digest) = 32),
	used_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
