-- Cheaper order-path writes (issue #14).
--
-- The answer of an idempotency key (its state becoming done, and the
-- stored answer replayed to repeats) is appended here instead of rewriting
-- the key's row: the key's row sits at a random place of its index, this
-- one at the end of the table. claim is the key row's rowid and owner its
-- owner when answered: a row whose claim and owner do not both match the
-- key's row is ignored (state pending: a repeat is an unknown outcome,
-- looked up at the venue), so no renumbering can attach an answer to
-- another key. The key's row keeps its own answer columns for the other
-- changes (unknown, reopened, resolved), which are rare; an answer here
-- overrides them.
CREATE TABLE idempotency_answers (
	claim          INTEGER PRIMARY KEY,
	owner          TEXT    NOT NULL,
	updated_at     INTEGER NOT NULL,
	status         INTEGER NOT NULL,
	header         TEXT    NOT NULL,
	body           BLOB,
	body_dropped   INTEGER NOT NULL,
	venue_order_id TEXT    NOT NULL
);
-- Budget entries are pruned per key, through budget_entries_key_at; the
-- index by time alone only cost every reservation an index update.
DROP INDEX IF EXISTS budget_entries_at;
