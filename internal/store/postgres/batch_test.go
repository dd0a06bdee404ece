package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/storetest"
)

// openBatch runs ws as ONE batch of d's ledger and returns each write's
// answer, as Open returns it.
func openBatch(t *testing.T, d *DB, ws []*ledger.Write) []error {
	t.Helper()
	l := d.Ledger()
	ops := make([]*ledgerOp, len(ws))
	for i, w := range ws {
		op, err := l.newOp(w)
		if err != nil {
			t.Fatal(err)
		}
		ops[i] = op
	}
	d.ledgerBatch(ops)
	errs := make([]error, len(ws))
	for i, op := range ops {
		select {
		case err := <-op.done:
			errs[i] = op.result(err)
		case <-time.After(30 * time.Second):
			t.Fatalf("write %d not answered", i)
		}
	}
	return errs
}

// batchWrite is storetest.LedgerWrite(i) with request id id, key key, an
// amount against budget (limit).
func batchWrite(i int, id, key, amount, budget, limit string) *ledger.Write {
	w := storetest.LedgerWrite(i, limit)
	w.Intent.RequestID = id
	w.Key.Record.Key = key
	w.Key.Record.Owner = "o-" + id
	w.Budget.Amount = decimal.RequireFromString(amount)
	w.Budget.Claims[0].Key = budget
	return w
}

// used is the window of budget since 2025-01-06 as a check reads it.
func usedOf(t *testing.T, d *DB, budget string) decimal.Decimal {
	t.Helper()
	var ex *policy.ExceededError
	err := d.Budgets().Check(context.Background(), time.Now(), decimal.Zero,
		[]policy.Claim{{Key: budget, Since: time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC), Limit: decimal.RequireFromString("-1")}})
	if !errors.As(err, &ex) {
		t.Fatalf("check %s: %v", budget, err)
	}
	return ex.Used
}

func storedOwner(t *testing.T, d *DB, key string) string {
	t.Helper()
	rec, err := d.Idempotency().Get(context.Background(), "tok_1/binance", key)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec.Owner
}

// TestLedgerBatchMixed: one batch of writes with every outcome, against
// the audit log: the writes that fit and claim a free key are stored with
// their intents, and nothing of the others; each is answered as it would
// be alone, in the batch's order (by key).
func TestLedgerBatchMixed(t *testing.T) {
	ctx := context.Background()
	d := auditReplica(t, auditDSN(t))
	log := openAudit(t, d, 0)
	const b, other = "token:tok_1/daily/USDT", "token:tok_2/daily/USDT"
	pre := idem.Record{Scope: "tok_1/binance", Key: "a-taken", Fingerprint: []byte{1}, ClientOrderID: "c-pre",
		State: idem.StatePending, Owner: "o-pre", Created: time.Now(), Updated: time.Now()}
	if _, claimed, err := d.Idempotency().Claim(ctx, pre, time.Now().Add(-time.Hour)); err != nil || !claimed {
		t.Fatalf("pre-claim: %v %v", claimed, err)
	}
	ws := []*ledger.Write{
		batchWrite(1, "r-k2", "k2", "20", b, "100"),                  // 100 + 20 > 100: refused (Used 100)
		batchWrite(2, "r-k1", "k1", "30", b, "100"),                  // fits: 60 + 30
		batchWrite(3, "r-a", "a-taken", "0", b, "100"),               // fits, but its key was claimed before
		batchWrite(4, "r-b", "b-fits", "60", b, "100"),               // fits: 0 + 60
		batchWrite(5, "r-k1-twin", "k1", "0", b, "100"),              // fits, but r-k1 has its key
		batchWrite(6, "r-k6", "k6", "200", other, "100"),             // over its own budget
		batchWrite(7, "r-k3", "k3", "10", b, "100"),                  // fits: 90 + 10
		batchWrite(8, "r-none", "k8", "0.000001", "token:zero", "0"), // over a zero limit
	}
	errs := openBatch(t, d, ws)
	var ex *policy.ExceededError
	for i, want := range []string{"exceeded 100", "ok", "taken o-pre", "ok", "taken o-r-k1", "exceeded 0", "ok", "exceeded 0"} {
		var got string
		switch err := errs[i]; {
		case err == nil:
			got = "ok"
			if len(ws[i].Budget.IDs) != 1 {
				t.Errorf("write %d: ids %v", i, ws[i].Budget.IDs)
			}
		case errors.As(err, &ex):
			got = "exceeded " + ex.Used.String()
		case errors.Is(err, ledger.ErrKeyTaken):
			got = "taken " + ws[i].Key.Stored.Owner
		default:
			got = err.Error()
		}
		if got != want {
			t.Errorf("write %d (%s): %s, want %s", i, ws[i].Intent.RequestID, got, want)
		}
		if got != "ok" && ws[i].Budget.IDs != nil {
			t.Errorf("write %d: ids %v after %s", i, ws[i].Budget.IDs, got)
		}
	}
	if u := usedOf(t, d, b); !u.Equal(decimal.RequireFromString("100")) {
		t.Errorf("budget used %s, want 100", u)
	}
	if u := usedOf(t, d, other); !u.IsZero() {
		t.Errorf("other budget used %s, want 0", u)
	}
	for key, owner := range map[string]string{"a-taken": "o-pre", "b-fits": "o-r-b", "k1": "o-r-k1", "k3": "o-r-k3", "k2": "", "k6": "", "k8": ""} {
		if got := storedOwner(t, d, key); got != owner {
			t.Errorf("key %s held by %q, want %q", key, got, owner)
		}
	}
	var entries int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM budget_entries`).Scan(&entries); err != nil || entries != 3 {
		t.Errorf("%d budget entries, want 3 (%v)", entries, err)
	}
	var ids []string
	for _, r := range scanAudit(t, d) {
		ids = append(ids, r.RequestID)
	}
	if want := []string{"r-b", "r-k1", "r-k3"}; !slices.Equal(ids, want) {
		t.Errorf("intent records %v, want %v (the batch's order)", ids, want)
	}
	if st := log.Stats(); st.Batches != 1 || st.Records != 3 {
		t.Errorf("audit stats %+v: want the 3 intents in one commit", st)
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifyAudit(t, d); err != nil || rep.Records != 3 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestLedgerBatchAgain: a write refused for a budget only because a
// write before it in the batch counted, which then lost its key, is run
// again (in the next batch) and opens.
func TestLedgerBatchAgain(t *testing.T) {
	ctx := context.Background()
	d := auditReplica(t, auditDSN(t))
	if _, err := UseTestIntents(ctx, d); err != nil {
		t.Fatal(err)
	}
	pre := storetest.LedgerWrite(1, "100")
	pre.Key.Record.Key = "a-first"
	if _, _, err := d.Idempotency().Claim(ctx, pre.Key.Record, time.Time{}); err != nil {
		t.Fatal(err)
	}
	const b = "token:tok_1/daily/USDT"
	// The batch runs them by key: a-first (taken), then b-second.
	ws := []*ledger.Write{batchWrite(2, "r-b", "b-second", "60", b, "100"), batchWrite(1, "r-a", "a-first", "60", b, "100")}
	errs := openBatch(t, d, ws)
	if !errors.Is(errs[1], ledger.ErrKeyTaken) || ws[1].Key.Stored.Owner != "o1" {
		t.Fatalf("taken key: %v, %q", errs[1], ws[1].Key.Stored.Owner)
	}
	if errs[0] != nil || len(ws[0].Budget.IDs) != 1 {
		t.Fatalf("the write after it: %v, ids %v", errs[0], ws[0].Budget.IDs)
	}
	if u := usedOf(t, d, b); !u.Equal(decimal.RequireFromString("60")) {
		t.Errorf("used %s, want 60", u)
	}
	if got, err := StoredTestIntents(ctx, d); err != nil || len(got) != 1 || !got["r-b"] {
		t.Errorf("intents %v (%v), want r-b", got, err)
	}
}

// TestLedgerBatchClaimFails: a claim the server refuses (a trigger here)
// is undone alone: its write is answered with the error and stores
// nothing, the other writes of the batch (before and after it) are
// stored, also when the failing claim is the batch's last.
func TestLedgerBatchClaimFails(t *testing.T) {
	ctx := context.Background()
	d := auditReplica(t, auditDSN(t))
	if _, err := UseTestIntents(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, `CREATE FUNCTION bad_key() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.key LIKE '%bad' THEN RAISE EXCEPTION 'bad key'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER bad_key BEFORE INSERT ON idempotency FOR EACH ROW EXECUTE FUNCTION bad_key()`); err != nil {
		t.Fatal(err)
	}
	const b = "token:tok_1/daily/USDT"
	ws := []*ledger.Write{
		batchWrite(1, "r1", "k1", "10", b, "1000"),
		batchWrite(2, "r2", "k2-bad", "10", b, "1000"),
		batchWrite(3, "r3", "k3", "10", b, "1000"),
		batchWrite(4, "r4", "z-bad", "10", b, "1000"),
	}
	errs := openBatch(t, d, ws)
	var ex *policy.ExceededError
	for i, bad := range []bool{false, true, false, true} {
		switch err := errs[i]; {
		case bad && (err == nil || errors.As(err, &ex) || errors.Is(err, ledger.ErrKeyTaken)):
			t.Errorf("write %d with a failing claim: %v", i, err)
		case !bad && err != nil:
			t.Errorf("write %d: %v", i, err)
		}
	}
	if u := usedOf(t, d, b); !u.Equal(decimal.RequireFromString("20")) {
		t.Errorf("used %s, want 20", u)
	}
	for key, owner := range map[string]string{"k1": "o-r1", "k2-bad": "", "k3": "o-r3", "z-bad": ""} {
		if got := storedOwner(t, d, key); got != owner {
			t.Errorf("key %s held by %q, want %q", key, got, owner)
		}
	}
	if got, err := StoredTestIntents(ctx, d); err != nil || len(got) != 2 || !got["r1"] || !got["r3"] {
		t.Errorf("intents %v (%v), want r1 and r3", got, err)
	}
}

// TestLedgerGivesUpQueued: a caller whose context ends while its write
// waits in the queue gets the context's error, and the batch that takes
// the queue then leaves the write out.
func TestLedgerGivesUpQueued(t *testing.T) {
	ctx := context.Background()
	d := auditReplica(t, auditDSN(t))
	if _, err := UseTestIntents(ctx, d); err != nil {
		t.Fatal(err)
	}
	// A batch runs already (as far as the queue knows): Open waits.
	d.ledgerQ.mu.Lock()
	d.ledgerQ.running = true
	d.ledgerQ.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	w := storetest.LedgerWrite(1, "1000")
	if err := d.Ledger().Open(cctx, w); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open = %v, want the context's error", err)
	}
	d.ledgerQ.mu.Lock()
	ops := d.ledgerQ.ops
	d.ledgerQ.ops, d.ledgerQ.running = nil, false
	d.ledgerQ.mu.Unlock()
	if len(ops) != 1 {
		t.Fatalf("%d writes queued, want 1", len(ops))
	}
	d.ledgerBatch(ops)
	select {
	case err := <-ops[0].done:
		t.Fatalf("an abandoned write was answered: %v", err)
	default:
	}
	if o := storedOwner(t, d, "k1"); o != "" {
		t.Fatalf("the abandoned write's key is stored (%s)", o)
	}
	if err := d.Ledger().Open(ctx, storetest.LedgerWrite(1, "1000")); err != nil {
		t.Fatalf("the same write again: %v", err)
	}
}

// TestLedgerBatchCommitFails: the server refuses a batch's COMMIT (a
// deferred constraint broken by one write's intent): every write of it
// is answered with an error and none is stored; the refusals answered
// before the commit stand.
func TestLedgerBatchCommitFails(t *testing.T) {
	ctx := context.Background()
	d := auditReplica(t, auditDSN(t))
	ti, err := UseTestIntents(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, `CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.request_id = 'r2' THEN INSERT INTO child VALUES (42); END IF; RETURN NEW; END $$;
		CREATE TRIGGER poison AFTER INSERT ON test_intents FOR EACH ROW EXECUTE FUNCTION poison()`); err != nil {
		t.Fatal(err)
	}
	pre := storetest.LedgerWrite(9, "1000")
	if _, _, err := d.Idempotency().Claim(ctx, pre.Key.Record, time.Time{}); err != nil {
		t.Fatal(err)
	}
	const b = "token:tok_1/daily/USDT"
	ws := []*ledger.Write{
		batchWrite(1, "r1", "k1", "60", b, "1000"),
		batchWrite(2, "r2", "k2", "60", b, "1000"),
		batchWrite(3, "r3", "k3", "60", b, "1000"),
		batchWrite(9, "r9", "k9", "60", b, "1000"),       // key taken before
		batchWrite(4, "r4", "k4", "60", "token:x", "10"), // over its budget
	}
	errs := openBatch(t, d, ws)
	var ex *policy.ExceededError
	for i, err := range errs[:3] {
		if err == nil || errors.As(err, &ex) || errors.Is(err, ledger.ErrKeyTaken) || ws[i].Budget.IDs != nil {
			t.Errorf("write %d of a batch whose commit failed: %v, ids %v", i, err, ws[i].Budget.IDs)
		}
	}
	if !errors.Is(errs[3], ledger.ErrKeyTaken) || ws[3].Key.Stored.Owner != "o9" {
		t.Errorf("key taken before the batch: %v, %q", errs[3], ws[3].Key.Stored.Owner)
	}
	if !errors.As(errs[4], &ex) {
		t.Errorf("over budget: %v", errs[4])
	}
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		if o := storedOwner(t, d, k); o != "" {
			t.Errorf("key %s of the failed batch is stored (%s)", k, o)
		}
	}
	var entries int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM budget_entries`).Scan(&entries); err != nil || entries != 0 {
		t.Errorf("%d budget entries, want 0 (%v)", entries, err)
	}
	if got, err := StoredTestIntents(ctx, d); err != nil || len(got) != 0 {
		t.Errorf("intents %v (%v), want none", got, err)
	}
	if ti.Committed() != 0 || ti.RolledBack() != 3 {
		t.Errorf("after calls: %d committed, %d rolled back", ti.Committed(), ti.RolledBack())
	}
	// The next batch is not affected.
	if errs := openBatch(t, d, []*ledger.Write{batchWrite(1, "r1", "k1", "60", b, "1000")}); errs[0] != nil {
		t.Fatal(errs[0])
	}
}

// TestLedgerBatchReplicas: 3 replicas × 64 writers, 3 writes each, of 7
// against one budget of 1000, each key written once by every replica:
// exactly 142 writes open (994), each key once, each with its intent
// record in the one audit chain, which verifies.
func TestLedgerBatchReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := auditDSN(t)
	var dbs []*DB
	var logs []*AuditLog
	for range 3 {
		d := auditReplica(t, dsn)
		dbs = append(dbs, d)
		logs = append(logs, openAudit(t, d, 16))
	}
	const b = "token:tok_1/daily/USDT"
	var mu sync.Mutex
	opened := map[string]string{} // key → request id
	var wg sync.WaitGroup
	for r, d := range dbs {
		for g := range 64 {
			wg.Go(func() {
				for i := range 3 {
					n := g*3 + i
					id := fmt.Sprint("r", r, ".", n)
					w := batchWrite(n, id, fmt.Sprint("k", n), "7", b, "1000")
					err := d.Ledger().Open(ctx, w)
					var ex *policy.ExceededError
					switch {
					case err == nil:
						mu.Lock()
						if prev, ok := opened[w.Key.Record.Key]; ok {
							t.Errorf("key %s opened by %s and %s", w.Key.Record.Key, prev, id)
						}
						opened[w.Key.Record.Key] = id
						mu.Unlock()
					case errors.As(err, &ex), errors.Is(err, ledger.ErrKeyTaken):
					default:
						t.Errorf("%s: %v", id, err)
					}
				}
			})
		}
	}
	wg.Wait()
	if len(opened) != 142 {
		t.Fatalf("%d writes opened, want 142", len(opened))
	}
	if u := usedOf(t, dbs[1], b); !u.Equal(decimal.RequireFromString("994")) {
		t.Fatalf("used %s, want 994", u)
	}
	for _, l := range logs {
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := audit.Verify(ctx, dbs[2].AuditReader(), auditKeys().PublicKey())
	if err != nil || rep.Records != 142 || rep.Unsigned != 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	want := map[string]bool{}
	for _, id := range opened {
		want[id] = true
	}
	for _, rec := range scanAudit(t, dbs[0]) {
		if !want[rec.RequestID] {
			t.Fatalf("intent record %s of a write that did not open (or twice)", rec.RequestID)
		}
		delete(want, rec.RequestID)
	}
	var batches uint64
	for _, l := range logs {
		batches += l.Stats().Batches
	}
	t.Logf("%d intents in %d commits", 142, batches)
}
