-- Anomaly detection (internal/detect). detect_profiles holds what the
-- detector learned per token (key "token:<public id>") and about admin
-- actions (key "admin"): the profile's JSON (baselines, instruments,
-- venues, hour-of-week counts, keyed hashes of source addresses; never a
-- secret, a token or an address). detect_holds holds the throttles and
-- the venue and credential freezes in force; subject is a token public
-- id, a venue id or a credential name. Times are Unix nanoseconds; until
-- is 0 for a freeze (in force until an admin releases it).
CREATE TABLE detect_profiles (
	key        TEXT    PRIMARY KEY,
	data       BLOB    NOT NULL,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE detect_holds (
	kind     TEXT    NOT NULL CHECK (kind IN ('throttle', 'freeze_venue', 'freeze_credential')),
	subject  TEXT    NOT NULL CHECK (subject <> ''),
	since    INTEGER NOT NULL,
	until    INTEGER NOT NULL,
	requests INTEGER NOT NULL CHECK (requests >= 0),
	per      INTEGER NOT NULL CHECK (per >= 0),
	detector TEXT    NOT NULL,
	finding  TEXT    NOT NULL,
	PRIMARY KEY (kind, subject)
) WITHOUT ROWID;
