-- The kill switch (internal/killswitch): one row per trip, active while
-- cleared_at is NULL. At most one active trip per (scope, target); every
-- process sharing the database re-reads the active rows. Trips are never
-- deleted: cleared ones keep who cleared them, when and why.
CREATE TABLE killswitch_trips (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	scope        TEXT    NOT NULL CHECK (scope IN ('all', 'venue', 'token')),
	target       TEXT    NOT NULL,
	rule         TEXT    NOT NULL,
	actor        TEXT    NOT NULL,
	reason       TEXT    NOT NULL,
	engaged_at   INTEGER NOT NULL,
	cleared_at   INTEGER,
	cleared_by   TEXT    NOT NULL DEFAULT '',
	clear_reason TEXT    NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX killswitch_trips_active ON killswitch_trips(scope, target) WHERE cleared_at IS NULL;
CREATE INDEX killswitch_trips_cleared ON killswitch_trips(scope, target, cleared_at);
