package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
)

// BudgetStore implements policy.BudgetStore on the database. Reservations
// and releases are direct writes of the database's group commit (batch.go):
// they run one after another on its writer, each sees the writes queued
// before it, and concurrent reservations are serialised, so a limit holds
// exactly.
//
// Every entry is also added to running totals per key (budget_totals, see
// migration 0006) at three bucket widths: minutes, hours and UTC days. A
// window is summed exactly from the entries of its first partial minute
// and whole buckets after that, so a check reads at most about 60 + 24 +
// 31 rows whatever the number of orders in the window. The writer keeps
// the sum of each key's window in memory (budgetCache) and writes the
// totals once per batch, so a reservation in a window it has summed before
// (a calendar day's) costs one INSERT.
type BudgetStore struct{ d *DB }

// Budgets returns the database's budget store.
func (d *DB) Budgets() *BudgetStore { return &BudgetStore{d: d} }

// Reserve implements policy.BudgetStore.
func (s *BudgetStore) Reserve(ctx context.Context, at time.Time, amount decimal.Decimal, claims []policy.Claim) ([]int64, error) {
	if err := checkAmount(amount, claims); err != nil {
		return nil, err
	}
	var ids []int64
	err := s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		ids, err = s.d.reserve(ctx, tx, clampNano(at), amount, claims)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// reserve checks claims against their limits (a refusal if one would be
// exceeded: nothing written) and records amount against each of them, on
// the writer.
func (d *DB) reserve(ctx context.Context, tx *sql.Tx, atN int64, amount decimal.Decimal, claims []policy.Claim) ([]int64, error) {
	if err := d.checkBudget(ctx, tx, amount, claims); err != nil {
		return nil, err
	}
	return d.insertEntries(ctx, tx, atN, amount, claims)
}

// checkBudget refuses (*policy.ExceededError) when amount does not fit
// under a claim's limit, on the writer. It writes nothing.
func (d *DB) checkBudget(ctx context.Context, tx *sql.Tx, amount decimal.Decimal, claims []policy.Claim) error {
	for i, cl := range claims {
		used, err := d.budgets.used(ctx, tx, cl.Key, clampNano(cl.Since))
		if err != nil {
			return err
		}
		if used.Add(amount).GreaterThan(cl.Limit) {
			return refuse(&policy.ExceededError{Index: i, Key: cl.Key, Used: used, Amount: amount, Limit: cl.Limit})
		}
	}
	return nil
}

// insertEntries records amount at atN against every claim, on the writer.
func (d *DB) insertEntries(ctx context.Context, tx *sql.Tx, atN int64, amount decimal.Decimal, claims []policy.Claim) ([]int64, error) {
	ids := make([]int64, 0, len(claims))
	a := amount.String()
	for _, cl := range claims {
		// Exec and LastInsertId: RETURNING takes the driver's query path,
		// twice the cost of the insert itself.
		res, err := d.exec(ctx, tx, qInsertEntry, cl.Key, atN, a)
		if err != nil {
			return nil, fmt.Errorf("sqlite: reserve budget: %w", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, fmt.Errorf("sqlite: reserve budget: %w", err)
		}
		d.budgets.add(cl.Key, atN, amount)
		ids = append(ids, id)
	}
	return ids, nil
}

// Check implements policy.BudgetStore: Reserve without writing.
func (s *BudgetStore) Check(ctx context.Context, _ time.Time, amount decimal.Decimal, claims []policy.Claim) error {
	if err := checkAmount(amount, claims); err != nil {
		return err
	}
	tx, err := s.d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: check budget: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	return s.d.check(ctx, tx, amount, claims)
}

func checkAmount(amount decimal.Decimal, claims []policy.Claim) error {
	if amount.IsNegative() {
		return errors.New("sqlite: budget amount is negative")
	}
	if len(claims) == 0 {
		return errors.New("sqlite: budget reservation without claims")
	}
	return nil
}

// check sums each claim's window (read-only, from the committed totals)
// and compares it with the limit.
func (d *DB) check(ctx context.Context, tx *sql.Tx, amount decimal.Decimal, claims []policy.Claim) error {
	for i, c := range claims {
		used, err := d.sumWindow(ctx, tx, c.Key, clampNano(c.Since))
		if err != nil {
			return err
		}
		if used.Add(amount).GreaterThan(c.Limit) {
			return &policy.ExceededError{Index: i, Key: c.Key, Used: used, Amount: amount, Limit: c.Limit}
		}
	}
	return nil
}

// Bucket widths of budget_totals' levels 0, 1 and 2, in nanoseconds.
const (
	bucketMinute = int64(time.Minute)
	bucketHour   = int64(time.Hour)
	bucketDay    = 24 * int64(time.Hour)
)

// bucketOf is the bucket of level l holding time atN.
func bucketOf(l int, atN int64) int64 {
	switch l {
	case 0:
		return floorDiv(atN, bucketMinute)
	case 1:
		return floorDiv(atN, bucketHour)
	default:
		return floorDiv(atN, bucketDay)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// clampNano is t in Unix nanoseconds, clamped to ±2^62 (about ±146 years
// around 1970) so that bucket arithmetic cannot overflow: time.Time{} as a
// window start means "everything", as before.
func clampNano(t time.Time) int64 {
	const lim = int64(1) << 62
	switch {
	case t.Before(time.Unix(0, -lim)):
		return -lim
	case t.After(time.Unix(0, lim)):
		return lim
	}
	return t.UnixNano()
}

// sumWindow sums the entries under key made at or after s (Unix ns): the
// entries of since's partial minute one by one, then whole minute buckets
// up to the first whole hour, whole hour buckets up to the first whole
// day, and whole day buckets (to the end of time: entries dated after now
// count too, as they did when every entry was summed).
func (d *DB) sumWindow(ctx context.Context, tx *sql.Tx, key string, s int64) (decimal.Decimal, error) {
	m1, h1, d1 := ceilDiv(s, bucketMinute), ceilDiv(s, bucketHour), ceilDiv(s, bucketDay)
	rows, err := d.query(ctx, tx, qSumWindow, key, s, m1*bucketMinute, m1, h1*60, h1, d1*24, d1)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("sqlite: read budget: %w", err)
	}
	defer rows.Close()
	sum := decimal.Zero
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return decimal.Decimal{}, fmt.Errorf("sqlite: read budget: %w", err)
		}
		v, err := decimal.NewFromString(a)
		if err != nil {
			return decimal.Decimal{}, fmt.Errorf("sqlite: budget amount %q: %w", a, err)
		}
		sum = sum.Add(v)
	}
	if err := rows.Err(); err != nil {
		return decimal.Decimal{}, fmt.Errorf("sqlite: read budget: %w", err)
	}
	return sum, nil
}

// applyTotals adds deltas[l] to key's bucket buckets[l] of level l. A
// bucket that reaches zero is deleted; one that would go below zero means
// the totals no longer match the entries, and is an error (the caller's
// savepoint is rolled back).
func (d *DB) applyTotals(ctx context.Context, tx *sql.Tx, key string, buckets [3]int64, deltas [3]decimal.Decimal) error {
	rows, err := d.query(ctx, tx, qReadTotals, key, buckets[0], buckets[1], buckets[2])
	if err != nil {
		return fmt.Errorf("sqlite: read budget totals: %w", err)
	}
	var cur [3]decimal.Decimal
	for rows.Next() {
		var (
			l int
			a string
		)
		if err := rows.Scan(&l, &a); err != nil {
			_ = rows.Close()
			return fmt.Errorf("sqlite: read budget totals: %w", err)
		}
		v, err := decimal.NewFromString(a)
		if err != nil || l < 0 || l > 2 {
			_ = rows.Close()
			return fmt.Errorf("sqlite: budget total %q of %s: bad row", a, key)
		}
		cur[l] = v
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: read budget totals: %w", err)
	}
	var next [3]decimal.Decimal
	all := true // every level changes to a positive amount: one statement
	for l := range cur {
		if deltas[l].IsZero() {
			all = false
			continue
		}
		next[l] = cur[l].Add(deltas[l])
		if next[l].IsNegative() {
			return fmt.Errorf("sqlite: budget totals of %s below zero: totals and entries disagree", key)
		}
		all = all && !next[l].IsZero()
	}
	if all {
		if _, err := d.exec(ctx, tx, qUpsertTotals3, key, buckets[0], next[0].String(), buckets[1], next[1].String(),
			buckets[2], next[2].String()); err != nil {
			return fmt.Errorf("sqlite: update budget totals: %w", err)
		}
		return nil
	}
	for l := range cur {
		switch {
		case deltas[l].IsZero():
			continue
		case next[l].IsZero():
			_, err = d.exec(ctx, tx, qDeleteTotal, key, l, buckets[l])
		default:
			_, err = d.exec(ctx, tx, qUpsertTotal, key, l, buckets[l], next[l].String())
		}
		if err != nil {
			return fmt.Errorf("sqlite: update budget totals: %w", err)
		}
	}
	return nil
}

// The budget store's statements on the order path (prepared in Open).
const (
	qInsertEntry = `INSERT INTO budget_entries(key, at, amount) VALUES (?, ?, ?)`
	// qSumWindow: ?1 key, ?2 since, ?3 first whole minute (ns), ?4 its
	// bucket, ?5 first whole hour's minute bucket, ?6 its hour bucket, ?7
	// first whole day's hour bucket, ?8 its day bucket.
	qSumWindow = `SELECT amount FROM budget_entries WHERE key = ?1 AND at >= ?2 AND at < ?3
		UNION ALL SELECT amount FROM budget_totals WHERE key = ?1 AND level = 0 AND bucket >= ?4 AND bucket < ?5
		UNION ALL SELECT amount FROM budget_totals WHERE key = ?1 AND level = 1 AND bucket >= ?6 AND bucket < ?7
		UNION ALL SELECT amount FROM budget_totals WHERE key = ?1 AND level = 2 AND bucket >= ?8`
	qReadTotals = `SELECT 0, amount FROM budget_totals WHERE key = ?1 AND level = 0 AND bucket = ?2
		UNION ALL SELECT 1, amount FROM budget_totals WHERE key = ?1 AND level = 1 AND bucket = ?3
		UNION ALL SELECT 2, amount FROM budget_totals WHERE key = ?1 AND level = 2 AND bucket = ?4`
	qUpsertTotals3 = `INSERT INTO budget_totals(key, level, bucket, amount) VALUES (?1, 0, ?2, ?3), (?1, 1, ?4, ?5), (?1, 2, ?6, ?7)
		ON CONFLICT (key, level, bucket) DO UPDATE SET amount = excluded.amount`
	qUpsertTotal = `INSERT INTO budget_totals(key, level, bucket, amount) VALUES (?, ?, ?, ?)
		ON CONFLICT (key, level, bucket) DO UPDATE SET amount = excluded.amount`
	qDeleteTotal = `DELETE FROM budget_totals WHERE key = ? AND level = ? AND bucket = ?`
)

// subtractEntries takes the deleted entries in rows (key, at, amount) off
// the totals, only at the levels whose bucket start is at or after floor
// (math.MinInt64: all levels). rows is closed. Prune uses it; releases
// go through budgetCache.add.
func (d *DB) subtractEntries(ctx context.Context, tx *sql.Tx, rows *sql.Rows, floor [3]int64) error {
	// Group by key and (minute, hour, day) so that a release of many
	// entries in one minute updates the buckets once.
	acc := map[string]map[[3]int64][3]decimal.Decimal{}
	for rows.Next() {
		key, at, v, err := scanEntry(rows)
		if err != nil {
			_ = rows.Close()
			return fmt.Errorf("sqlite: %w", err)
		}
		b := [3]int64{bucketOf(0, at), bucketOf(1, at), bucketOf(2, at)}
		if acc[key] == nil {
			acc[key] = map[[3]int64][3]decimal.Decimal{}
		}
		d := acc[key][b]
		for l := range d {
			if b[l] >= floor[l] {
				d[l] = d[l].Sub(v)
			}
		}
		acc[key][b] = d
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: read budget entries: %w", err)
	}
	for key, byBucket := range acc {
		for b, delta := range byBucket {
			if err := d.applyTotals(ctx, tx, key, b, delta); err != nil {
				return err
			}
		}
	}
	return nil
}

// Release implements policy.BudgetStore.
func (s *BudgetStore) Release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `DELETE FROM budget_entries WHERE id IN (?` + strings.Repeat(",?", len(ids)-1) + `) RETURNING key, at, amount` // #nosec G202 -- only placeholders are concatenated
	err := s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			key, at, v, err := scanEntry(rows)
			if err != nil {
				return err
			}
			s.d.budgets.add(key, at, v.Neg())
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("sqlite: release budget: %w", err)
	}
	return nil
}

// Prune implements policy.BudgetStore. Totals buckets wholly before the
// cut are deleted; the one bucket per level and key that straddles it
// loses exactly the pruned entries inside it.
func (s *BudgetStore) Prune(ctx context.Context, before time.Time) error {
	b := clampNano(before)
	// The first bucket of each level that is not wholly before b.
	keep := [3]int64{bucketOf(0, b), bucketOf(1, b), bucketOf(2, b)}
	err := s.d.writeDirect(ctx, func(ctx context.Context, tx *sql.Tx) error {
		c := s.d.budgets
		if err := c.flush(ctx, tx); err != nil {
			return err
		}
		c.forget()
		// Entries are found per key (budget_entries_key_at); every key
		// with entries has totals.
		keys, err := distinctKeys(ctx, tx)
		if err != nil {
			return err
		}
		for l, k := range keep {
			if _, err := tx.ExecContext(ctx, `DELETE FROM budget_totals WHERE level = ? AND bucket < ?`, l, k); err != nil {
				return err
			}
		}
		for _, key := range keys {
			// Entries in the straddling buckets: at most the day before b.
			rows, err := tx.QueryContext(ctx, `DELETE FROM budget_entries WHERE key = ? AND at >= ? AND at < ? RETURNING key, at, amount`,
				key, keep[2]*bucketDay, b)
			if err != nil {
				return err
			}
			if err := s.d.subtractEntries(ctx, tx, rows, keep); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM budget_entries WHERE key = ? AND at < ?`, key, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: prune budgets: %w", err)
	}
	return nil
}

// distinctKeys lists the budget keys that have totals.
func distinctKeys(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT key FROM budget_totals`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// budgetCache is the writer's memory of budget windows: for each key
// recently reserved against, the sum of its window from one start (a
// calendar day's start stays the same all day, so reservations in it need
// no read), and the changes to budget_totals not written yet (written once
// per batch, before COMMIT). It is owned by the writer goroutine; as a
// participant it forgets what a rolled-back batch changed, and everything
// when another connection changed the database.
type budgetCache struct {
	d       *DB
	sums    map[string]windowSum
	touched map[string]bool
	// pending totals changes: key → (minute, hour, day) buckets → delta
	// per level.
	pending map[string]map[[3]int64][3]decimal.Decimal
}

type windowSum struct {
	since int64
	sum   decimal.Decimal
}

// maxCachedSums bounds the keys remembered (calendar-day keys change
// daily); beyond it the cache starts afresh.
const maxCachedSums = 4096

func newBudgetCache(d *DB) *budgetCache {
	return &budgetCache{d: d, sums: map[string]windowSum{}, touched: map[string]bool{},
		pending: map[string]map[[3]int64][3]decimal.Decimal{}}
}

// used is the sum of key's entries made at or after since, as of the
// batch's transaction.
func (c *budgetCache) used(ctx context.Context, tx *sql.Tx, key string, since int64) (decimal.Decimal, error) {
	if w, ok := c.sums[key]; ok && w.since == since {
		return w.sum, nil
	}
	// The totals must hold this batch's changes before they are read.
	if err := c.flushKey(ctx, tx, key); err != nil {
		return decimal.Decimal{}, err
	}
	sum, err := c.d.sumWindow(ctx, tx, key, since)
	if err != nil {
		return decimal.Decimal{}, err
	}
	if len(c.sums) >= maxCachedSums {
		clear(c.sums)
	}
	c.sums[key] = windowSum{since: since, sum: sum}
	c.touched[key] = true
	return sum, nil
}

// add records delta (negative for a release) of an entry made at atN.
func (c *budgetCache) add(key string, atN int64, delta decimal.Decimal) {
	if w, ok := c.sums[key]; ok && atN >= w.since {
		w.sum = w.sum.Add(delta)
		c.sums[key] = w
	}
	c.touched[key] = true
	b := [3]int64{bucketOf(0, atN), bucketOf(1, atN), bucketOf(2, atN)}
	byBucket := c.pending[key]
	if byBucket == nil {
		byBucket = map[[3]int64][3]decimal.Decimal{}
		c.pending[key] = byBucket
	}
	d := byBucket[b]
	for l := range d {
		d[l] = d[l].Add(delta)
	}
	byBucket[b] = d
}

func (c *budgetCache) flushKey(ctx context.Context, tx *sql.Tx, key string) error {
	for b, delta := range c.pending[key] {
		if err := c.d.applyTotals(ctx, tx, key, b, delta); err != nil {
			return err
		}
	}
	delete(c.pending, key)
	return nil
}

// forget drops every remembered sum (they are read again when needed).
func (c *budgetCache) forget() { clear(c.sums) }

func (c *budgetCache) begin(_ context.Context, _ *sql.Tx, external bool) error {
	if external {
		c.forget()
	}
	return nil
}

func (c *budgetCache) flush(ctx context.Context, tx *sql.Tx) error {
	for key := range c.pending {
		if err := c.flushKey(ctx, tx, key); err != nil {
			return err
		}
	}
	return nil
}

func (c *budgetCache) end(err error, _ time.Duration) {
	if err != nil {
		for key := range c.touched {
			delete(c.sums, key)
		}
	}
	clear(c.touched)
	clear(c.pending)
}

var _ participant = (*budgetCache)(nil)

// scanEntry reads one budget_entries row selected as (key, at, amount).
func scanEntry(rows *sql.Rows) (key string, at int64, amount decimal.Decimal, err error) {
	var a string
	if err := rows.Scan(&key, &at, &a); err != nil {
		return "", 0, decimal.Decimal{}, fmt.Errorf("read budget entry: %w", err)
	}
	amount, err = decimal.NewFromString(a)
	if err != nil {
		return "", 0, decimal.Decimal{}, fmt.Errorf("budget entry amount %q: %w", a, err)
	}
	return key, at, amount, nil
}

// backfillBudgetTotals fills budget_totals from budget_entries (migration
// 6), summing exactly in Go.
func backfillBudgetTotals(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT key, at, amount FROM budget_entries`)
	if err != nil {
		return fmt.Errorf("budget totals: %w", err)
	}
	type bk struct {
		key    string
		level  int
		bucket int64
	}
	sums := map[bk]decimal.Decimal{}
	for rows.Next() {
		key, at, v, err := scanEntry(rows)
		if err != nil {
			_ = rows.Close()
			return fmt.Errorf("budget totals: %w", err)
		}
		for l := range 3 {
			k := bk{key, l, bucketOf(l, at)}
			sums[k] = sums[k].Add(v)
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("budget totals: %w", err)
	}
	for k, v := range sums {
		if v.IsZero() {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO budget_totals(key, level, bucket, amount) VALUES (?, ?, ?, ?)`,
			k.key, k.level, k.bucket, v.String()); err != nil {
			return fmt.Errorf("budget totals: %w", err)
		}
	}
	return nil
}

var _ policy.BudgetStore = (*BudgetStore)(nil)
