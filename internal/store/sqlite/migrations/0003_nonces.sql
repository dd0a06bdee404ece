-- Nonce high-water marks (internal/venue/kraken NonceStore). key names an
-- API key by a SHA-256 prefix, never the key itself; hwm is the highest
-- nonce reserved so far (a reservation is persisted before any nonce in it
-- is used, so a restart resumes above every nonce ever sent).
CREATE TABLE nonces (
	key        TEXT    PRIMARY KEY,
	hwm        INTEGER NOT NULL CHECK (hwm >= 0),
	updated_at INTEGER NOT NULL
);
