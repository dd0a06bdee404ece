-- The hash-chained audit log (internal/audit), kept in the main database
-- so that a write request's intent record, its budget reservation and its
-- idempotency claim are one transaction (one fsync): the ledger
-- (internal/ledger). Same tables as the audit log's own SQLite file, so
-- the same reader verifies either: data holds a record's or checkpoint's
-- canonical bytes exactly; seq is a copy for ordering and lookup only
-- (verification trusts the bytes, not the column). Rows are appended in
-- seq order (the rowid), never updated.
CREATE TABLE audit_records (
	seq  INTEGER PRIMARY KEY,
	data BLOB NOT NULL
);
CREATE TABLE audit_checkpoints (
	id   INTEGER PRIMARY KEY AUTOINCREMENT,
	seq  INTEGER NOT NULL,
	data BLOB NOT NULL
);
