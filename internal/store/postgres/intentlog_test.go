package postgres

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/audit"
)

// testIntentLog stands for the audit log in the ledger's tests: it
// inserts each intent's request id into test_intents inside the ledger's
// transaction, and fails an intent whose request id starts with "fail".
type testIntentLog struct {
	committed, rolledBack atomic.Int64
}

var errTestIntent = errors.New("test intent log: refused")

func (l *testIntentLog) appendIntent(ctx context.Context, tx pgx.Tx, e audit.Event) (func(bool), error) {
	if strings.HasPrefix(e.RequestID, "fail") {
		return nil, errTestIntent
	}
	if _, err := tx.Exec(ctx, `INSERT INTO test_intents (request_id) VALUES ($1)`, e.RequestID); err != nil {
		return nil, err
	}
	return func(committed bool) {
		if committed {
			l.committed.Add(1)
		} else {
			l.rolledBack.Add(1)
		}
	}, nil
}

func (l *testIntentLog) checkIntent(e audit.Event) error {
	if strings.HasPrefix(e.RequestID, "fail") {
		return errTestIntent
	}
	return nil
}

func (l *testIntentLog) appendIntents(ctx context.Context, tx pgx.Tx, es []audit.Event) (func(bool), error) {
	ids := make([]string, len(es))
	for i, e := range es {
		if err := l.checkIntent(e); err != nil {
			return nil, err
		}
		ids[i] = e.RequestID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO test_intents (request_id) SELECT unnest($1::text[])`, ids); err != nil {
		return nil, err
	}
	n := int64(len(es))
	return func(committed bool) {
		if committed {
			l.committed.Add(n)
		} else {
			l.rolledBack.Add(n)
		}
	}, nil
}

// TestIntents is what the external tests see of a test intent log.
type TestIntents struct{ l *testIntentLog }

// Committed and RolledBack count the after calls.
func (ti TestIntents) Committed() int64  { return ti.l.committed.Load() }
func (ti TestIntents) RolledBack() int64 { return ti.l.rolledBack.Load() }

// UseTestIntents gives d a test intent log (creating test_intents in its
// schema if needed).
func UseTestIntents(ctx context.Context, d *DB) (TestIntents, error) {
	if _, err := d.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS test_intents (request_id TEXT PRIMARY KEY)`); err != nil {
		return TestIntents{}, err
	}
	l := &testIntentLog{}
	d.setIntentLog(l)
	return TestIntents{l}, nil
}

// StoredTestIntents lists the request ids in test_intents.
func StoredTestIntents(ctx context.Context, d *DB) (map[string]bool, error) {
	rows, err := d.pool.Query(ctx, `SELECT request_id FROM test_intents`)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for _, id := range ids {
		got[id] = true
	}
	return got, nil
}

var _ intentLog = (*testIntentLog)(nil)
