-- Running totals of budget_entries, so that a reservation's check reads a
-- few rows instead of every entry in its window. One row per (key, level,
-- bucket): level 0 buckets are Unix minutes, level 1 hours, level 2 UTC
-- days (bucket = floor(at / width)); every entry counts once at every
-- level. A window [since, now] is summed exactly from the entries of its
-- first partial minute, then whole minutes up to the first whole hour,
-- whole hours up to the first whole day, and whole days. amount is an
-- exact decimal as TEXT, kept in step with budget_entries in the same
-- transaction (insert adds, release and prune subtract; a bucket that
-- reaches zero is deleted). Existing entries are summed into it by the
-- migration's Go step (internal/store/sqlite/budget.go).
CREATE TABLE budget_totals (
	key    TEXT    NOT NULL,
	level  INTEGER NOT NULL CHECK (level IN (0, 1, 2)),
	bucket INTEGER NOT NULL,
	amount TEXT    NOT NULL,
	PRIMARY KEY (key, level, bucket)
) WITHOUT ROWID;
