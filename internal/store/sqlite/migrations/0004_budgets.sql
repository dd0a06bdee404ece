-- Budget reservations (internal/policy BudgetStore). key names one budget
-- instance (scope and id, budget name, currency, window; calendar-day keys
-- include the date); at is the reservation time in Unix nanoseconds;
-- amount is an exact decimal kept as TEXT and summed in Go (SQLite has no
-- decimal type). A released reservation is deleted.
CREATE TABLE budget_entries (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	key    TEXT    NOT NULL,
	at     INTEGER NOT NULL,
	amount TEXT    NOT NULL
);
CREATE INDEX budget_entries_key_at ON budget_entries(key, at);
CREATE INDEX budget_entries_at ON budget_entries(at);
