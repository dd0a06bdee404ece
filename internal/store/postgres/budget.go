package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/policy"
)

// BudgetStore implements policy.BudgetStore on the database.
//
// Reservations against one budget key are serialised across every
// replica by a transaction-scoped advisory lock on the key, taken before
// the key's window is summed: the sum then sees every reservation
// committed before (READ COMMITTED takes a snapshot per statement), and
// no other reservation of the key commits until this one has. A
// transaction locks all its keys in one statement in ascending lock id
// order, so two reservations sharing keys never deadlock. The lock also
// covers keys that have no row yet, which a row lock could not.
//
// As in store/sqlite, every entry is added to running totals per key
// (budget_totals) at three bucket widths, minutes, hours and UTC days, so
// that a window is summed exactly from the entries of its first partial
// minute and at most about 60 + 24 + 31 total rows. Amounts are exact
// decimal strings, summed by the server as NUMERIC.
type BudgetStore struct{ d *DB }

// Budgets returns the database's budget store.
func (d *DB) Budgets() *BudgetStore { return &BudgetStore{d: d} }

// budgetLockClass is the first key of the two-key advisory locks on
// budget keys ("budg" in ASCII); the second is a hash of the budget key.
// Two-key advisory locks do not share the one-key space of the migration
// lock. A hash collision only makes two budgets wait for each other.
const budgetLockClass int32 = 0x62756467

// budgetLockID is the second advisory lock key of a budget key.
func budgetLockID(key string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32()) // #nosec G115 -- a hash, any bits will do
}

// lockIDs are the lock ids of keys, ascending and without repeats.
func lockIDs(keys []string) []int32 {
	ids := make([]int32, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, budgetLockID(k))
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// qLockBudgets takes the advisory locks of $2 (ascending: unnest keeps the
// array's order) in class $1 until the transaction ends.
const qLockBudgets = `SELECT count(pg_advisory_xact_lock($1::int4, h)) FROM unnest($2::int4[]) AS h`

// Reserve implements policy.BudgetStore.
func (s *BudgetStore) Reserve(ctx context.Context, at time.Time, amount decimal.Decimal, claims []policy.Claim) ([]int64, error) {
	if err := checkAmount(amount, claims); err != nil {
		return nil, err
	}
	var ids []int64
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		r := reservation{atN: clampNano(at), amount: amount, claims: claims}
		b := &pgx.Batch{}
		r.queue(b)
		br := tx.SendBatch(ctx, b)
		err := r.read(br)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		ids = r.ids
		return r.check()
	})
	var ex *policy.ExceededError
	switch {
	case errors.As(err, &ex):
		return nil, ex
	case err != nil:
		return nil, fmt.Errorf("postgres: reserve budget: %w", err)
	}
	return ids, nil
}

// Check implements policy.BudgetStore: Reserve without writing (and
// without locking: a dry run may race with reservations).
func (s *BudgetStore) Check(ctx context.Context, _ time.Time, amount decimal.Decimal, claims []policy.Claim) error {
	if err := checkAmount(amount, claims); err != nil {
		return err
	}
	r := reservation{amount: amount, claims: claims}
	b := &pgx.Batch{}
	queueSums(b, claims)
	br := s.d.pool.SendBatch(ctx, b)
	err := r.readSums(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.check()
	}
	var ex *policy.ExceededError
	switch {
	case errors.As(err, &ex):
		return ex
	case err != nil:
		return fmt.Errorf("postgres: check budget: %w", err)
	}
	return nil
}

func checkAmount(amount decimal.Decimal, claims []policy.Claim) error {
	if amount.IsNegative() {
		return errors.New("postgres: budget amount is negative")
	}
	if len(claims) == 0 {
		return errors.New("postgres: budget reservation without claims")
	}
	return nil
}

// reservation is a budget reservation made in one pipelined round trip
// of its transaction: the claims' keys are locked, their windows summed,
// and the entries inserted and added to the totals, all before the sums
// are compared with the limits; a reservation over a limit is then
// refused and its transaction rolled back, taking the entries with it.
// Writing before knowing spares the round trip that dominates the time
// the locks are held (with the COMMIT's WAL flush).
type reservation struct {
	atN    int64
	amount decimal.Decimal
	claims []policy.Claim

	// Set by read.
	used []decimal.Decimal
	ids  []int64
}

// queue queues the reservation's statements.
func (r *reservation) queue(b *pgx.Batch) {
	keys := make([]string, len(r.claims))
	for i, c := range r.claims {
		keys[i] = c.Key
	}
	// The sums run after the lock statement has returned, each with a
	// snapshot of its own (READ COMMITTED): they see every reservation
	// committed by the lock's previous holders.
	b.Queue(qLockBudgets, budgetLockClass, lockIDs(keys))
	queueSums(b, r.claims)
	a := r.amount.String()
	for _, c := range r.claims {
		b.Queue(qInsertEntry, c.Key, r.atN, a)
	}
	if r.amount.IsZero() {
		return
	}
	// A key claimed twice counts twice, as it has two entries.
	perKey := map[string]decimal.Decimal{}
	var order []string
	for _, c := range r.claims {
		if _, ok := perKey[c.Key]; !ok {
			order = append(order, c.Key)
		}
		perKey[c.Key] = perKey[c.Key].Add(r.amount)
	}
	for _, k := range order {
		b.Queue(qAddTotals, k, bucketOf(0, r.atN), bucketOf(1, r.atN), bucketOf(2, r.atN), perKey[k].String())
	}
}

// read reads the results of queue's statements from br.
func (r *reservation) read(br pgx.BatchResults) error {
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("lock budgets: %w", err)
	}
	if err := r.readSums(br); err != nil {
		return err
	}
	r.ids = make([]int64, len(r.claims))
	for i := range r.claims {
		if err := br.QueryRow().Scan(&r.ids[i]); err != nil {
			return fmt.Errorf("insert budget entry: %w", err)
		}
	}
	if !r.amount.IsZero() {
		seen := map[string]bool{}
		for _, c := range r.claims {
			if seen[c.Key] {
				continue
			}
			seen[c.Key] = true
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("update budget totals: %w", err)
			}
		}
	}
	return nil
}

// readSums reads the sums queued by queueSums.
func (r *reservation) readSums(br pgx.BatchResults) error {
	r.used = make([]decimal.Decimal, len(r.claims))
	for i := range r.claims {
		var a string
		if err := br.QueryRow().Scan(&a); err != nil {
			return fmt.Errorf("read budget: %w", err)
		}
		v, err := decimal.NewFromString(a)
		if err != nil {
			return fmt.Errorf("budget sum %q: %w", a, err)
		}
		r.used[i] = v
	}
	return nil
}

// check refuses (*policy.ExceededError, the first claim over its limit)
// when the amount does not fit under every limit, as summed before the
// reservation's own entries.
func (r *reservation) check() error {
	for i, c := range r.claims {
		if r.used[i].Add(r.amount).GreaterThan(c.Limit) {
			return &policy.ExceededError{Index: i, Key: c.Key, Used: r.used[i], Amount: r.amount, Limit: c.Limit}
		}
	}
	return nil
}

// queueSums queues the sum of each claim's window.
func queueSums(b *pgx.Batch, claims []policy.Claim) {
	for _, c := range claims {
		s := clampNano(c.Since)
		m1, h1, d1 := ceilDiv(s, bucketMinute), ceilDiv(s, bucketHour), ceilDiv(s, bucketDay)
		b.Queue(qSumWindow, c.Key, s, m1*bucketMinute, m1, h1*60, h1, d1*24, d1)
	}
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
// window start means "everything".
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

// The budget store's statements.
const (
	qInsertEntry = `INSERT INTO budget_entries (key, at, amount) VALUES ($1, $2, $3) RETURNING id`
	// qSumWindow: $1 key, $2 since, $3 first whole minute (ns), $4 its
	// bucket, $5 first whole hour's minute bucket, $6 its hour bucket, $7
	// first whole day's hour bucket, $8 its day bucket. Entries dated
	// after now count too.
	qSumWindow = `SELECT coalesce(sum(amount::numeric), 0)::text FROM (
		SELECT amount FROM budget_entries WHERE key = $1 AND at >= $2 AND at < $3
		UNION ALL SELECT amount FROM budget_totals WHERE key = $1 AND level = 0 AND bucket >= $4 AND bucket < $5
		UNION ALL SELECT amount FROM budget_totals WHERE key = $1 AND level = 1 AND bucket >= $6 AND bucket < $7
		UNION ALL SELECT amount FROM budget_totals WHERE key = $1 AND level = 2 AND bucket >= $8) AS w`
	// qAddTotals adds $5 to key $1's minute $2, hour $3 and day $4.
	qAddTotals = `INSERT INTO budget_totals (key, level, bucket, amount) VALUES ($1, 0, $2, $5), ($1, 1, $3, $5), ($1, 2, $4, $5)
		ON CONFLICT (key, level, bucket) DO UPDATE SET amount = (budget_totals.amount::numeric + excluded.amount::numeric)::text`
	// qSubTotal takes $4 off key $1's bucket $3 of level $2 and tells
	// whether the bucket went below zero or reached it.
	qSubTotal = `UPDATE budget_totals SET amount = (amount::numeric - $4::numeric)::text
		WHERE key = $1 AND level = $2 AND bucket = $3 RETURNING amount::numeric < 0, amount::numeric = 0`
	qDeleteTotal = `DELETE FROM budget_totals WHERE key = $1 AND level = $2 AND bucket = $3 AND amount::numeric = 0`
)

// bucketsKey is a key's (minute, hour, day) buckets.
type bucketsKey struct {
	key string
	b   [3]int64
}

// subtractTotals takes the deltas (amounts of deleted entries, per key
// and buckets, per level; a zero delta leaves its level alone) off the
// totals; the keys must be locked. A bucket that reaches zero is deleted;
// one that is missing or would go below zero means the totals no longer
// match the entries, and is an error.
func subtractTotals(ctx context.Context, tx pgx.Tx, deltas map[bucketsKey][3]decimal.Decimal) error {
	type target struct {
		key   string
		level int
		b     int64
	}
	var targets []target
	b := &pgx.Batch{}
	for k, d := range deltas {
		for l := range d {
			if d[l].IsZero() {
				continue
			}
			b.Queue(qSubTotal, k.key, l, k.b[l], d[l].String())
			targets = append(targets, target{k.key, l, k.b[l]})
		}
	}
	if len(targets) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	del := &pgx.Batch{}
	for _, t := range targets {
		var neg, zero bool
		err := br.QueryRow().Scan(&neg, &zero)
		switch {
		case errors.Is(err, pgx.ErrNoRows), err == nil && neg:
			_ = br.Close()
			return fmt.Errorf("budget totals of %s: totals and entries disagree", t.key)
		case err != nil:
			_ = br.Close()
			return fmt.Errorf("update budget totals: %w", err)
		case zero:
			del.Queue(qDeleteTotal, t.key, t.level, t.b)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("update budget totals: %w", err)
	}
	if del.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, del).Close(); err != nil {
		return fmt.Errorf("update budget totals: %w", err)
	}
	return nil
}

// lockKeys takes the advisory locks of keys.
func lockKeys(ctx context.Context, tx pgx.Tx, keys []string) error {
	if _, err := tx.Exec(ctx, qLockBudgets, budgetLockClass, lockIDs(keys)); err != nil {
		return fmt.Errorf("lock budgets: %w", err)
	}
	return nil
}

// Release implements policy.BudgetStore. The entries' keys are locked
// before the entries are deleted, in the order every writer of the
// budget tables locks (keys, then rows), so that a release never waits
// for a prune that waits for it.
func (s *BudgetStore) Release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		// An entry's key never changes: the keys read here are those of
		// the entries the DELETE finds (or fewer, if some are gone).
		rows, err := tx.Query(ctx, `SELECT DISTINCT key FROM budget_entries WHERE id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(keys) == 0 {
			return err
		}
		if err := lockKeys(ctx, tx, keys); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `DELETE FROM budget_entries WHERE id = ANY($1) RETURNING key, at, amount`, ids)
		if err != nil {
			return err
		}
		deltas, err := groupEntries(rows, [3]int64{minInt64, minInt64, minInt64})
		if err != nil {
			return err
		}
		return subtractTotals(ctx, tx, deltas)
	})
	if err != nil {
		return fmt.Errorf("postgres: release budget: %w", err)
	}
	return nil
}

const minInt64 = -1 << 63

// groupEntries sums deleted entries (key, at, amount) per key and
// buckets, at the levels whose bucket is at or after floor; it closes
// rows.
func groupEntries(rows pgx.Rows, floor [3]int64) (map[bucketsKey][3]decimal.Decimal, error) {
	defer rows.Close()
	deltas := map[bucketsKey][3]decimal.Decimal{}
	for rows.Next() {
		var (
			key, a string
			at     int64
		)
		if err := rows.Scan(&key, &at, &a); err != nil {
			return nil, fmt.Errorf("read budget entry: %w", err)
		}
		v, err := decimal.NewFromString(a)
		if err != nil {
			return nil, fmt.Errorf("budget entry amount %q: %w", a, err)
		}
		k := bucketsKey{key, [3]int64{bucketOf(0, at), bucketOf(1, at), bucketOf(2, at)}}
		d := deltas[k]
		for l := range d {
			if k.b[l] >= floor[l] {
				d[l] = d[l].Add(v)
			}
		}
		deltas[k] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read budget entries: %w", err)
	}
	return deltas, nil
}

// Prune implements policy.BudgetStore, one transaction per budget key.
// Totals buckets wholly before the cut are deleted; the one bucket per
// level and key that straddles it loses exactly the pruned entries inside
// it.
func (s *BudgetStore) Prune(ctx context.Context, before time.Time) error {
	b := clampNano(before)
	// The first bucket of each level that is not wholly before b.
	keep := [3]int64{bucketOf(0, b), bucketOf(1, b), bucketOf(2, b)}
	keys, err := s.pruneKeys(ctx, b)
	if err != nil {
		return fmt.Errorf("postgres: prune budgets: %w", err)
	}
	for _, key := range keys {
		err := s.d.inTx(ctx, func(tx pgx.Tx) error {
			if err := lockKeys(ctx, tx, []string{key}); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM budget_totals WHERE key = $1 AND
				((level = 0 AND bucket < $2) OR (level = 1 AND bucket < $3) OR (level = 2 AND bucket < $4))`,
				key, keep[0], keep[1], keep[2]); err != nil {
				return err
			}
			// Entries in the straddling buckets: at most the day before b.
			rows, err := tx.Query(ctx, `DELETE FROM budget_entries WHERE key = $1 AND at >= $2 AND at < $3 RETURNING key, at, amount`,
				key, keep[2]*bucketDay, b)
			if err != nil {
				return err
			}
			deltas, err := groupEntries(rows, keep)
			if err != nil {
				return err
			}
			if err := subtractTotals(ctx, tx, deltas); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `DELETE FROM budget_entries WHERE key = $1 AND at < $2`, key, b)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: prune budgets: %w", err)
		}
	}
	return nil
}

// pruneKeys lists the budget keys with totals, and so entries, before b.
func (s *BudgetStore) pruneKeys(ctx context.Context, b int64) ([]string, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT DISTINCT key FROM budget_totals WHERE level = 2 AND bucket <= $1`, bucketOf(2, b))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

var _ policy.BudgetStore = (*BudgetStore)(nil)
