-- Vault: key-encryption keys, system keys, credentials, versions, fields,
-- and fingerprints of values revoked as compromised. Every blob here is
-- sealed (XChaCha20-Poly1305) or a keyed hash; see internal/vault.
CREATE TABLE vault_meta (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
CREATE TABLE vault_keks (
	version    INTEGER PRIMARY KEY,
	wrapped    BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	active     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE vault_system_keys (
	name        TEXT PRIMARY KEY,
	kek_version INTEGER NOT NULL REFERENCES vault_keks(version),
	wrapped     BLOB    NOT NULL
);
CREATE TABLE vault_credentials (
	name            TEXT PRIMARY KEY,
	current_version INTEGER NOT NULL,
	state           TEXT    NOT NULL,
	rotation_days   INTEGER NOT NULL DEFAULT 0,
	created_at      INTEGER NOT NULL,
	rotated_at      INTEGER NOT NULL,
	revoked_at      INTEGER NOT NULL DEFAULT 0,
	last_used_at    INTEGER NOT NULL DEFAULT 0,
	mac             BLOB    NOT NULL
);
CREATE TABLE vault_versions (
	name        TEXT    NOT NULL REFERENCES vault_credentials(name) ON DELETE CASCADE,
	version     INTEGER NOT NULL,
	kek_version INTEGER NOT NULL REFERENCES vault_keks(version),
	wrapped_dek BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (name, version)
);
CREATE TABLE vault_fields (
	name       TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	field      TEXT    NOT NULL,
	ciphertext BLOB    NOT NULL,
	PRIMARY KEY (name, version, field),
	FOREIGN KEY (name, version) REFERENCES vault_versions(name, version) ON DELETE CASCADE
);
CREATE TABLE vault_compromised (
	fingerprint BLOB PRIMARY KEY,
	name        TEXT    NOT NULL,
	field       TEXT    NOT NULL,
	revoked_at  INTEGER NOT NULL
);
