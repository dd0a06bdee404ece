package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// openLedger opens a database with its audit log.
func openLedger(t testing.TB, path string) (*sqlite.DB, *sqlite.AuditLog) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	log, err := db.OpenAuditLog(context.Background(), sqlite.AuditOptions{Keys: benchKeys(), CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	return db, log
}

// ledgerWrite is one order's write: 60 USDT against a daily budget of
// limit, the key "k<i>", an intent record with request id "r<i>".
func ledgerWrite(i int, limit string) *ledger.Write {
	at := time.Date(2025, 1, 6, 12, 0, 0, i, time.UTC)
	ev := audit.Event{RequestID: fmt.Sprint("r", i), TokenID: "tok_1", Venue: "binance", Method: "POST", Path: "/api/v3/order",
		Operation: "order.place", Instrument: "BTCUSDT", Quantity: "0.001", Price: "60000", ClientOrderID: fmt.Sprint("c", i)}
	rec := idem.Record{Scope: "tok_1/binance", Key: fmt.Sprint("k", i), Fingerprint: []byte{byte(i)}, ClientOrderID: fmt.Sprint("c", i),
		State: idem.StatePending, Owner: fmt.Sprint("o", i), Created: at, Updated: at}
	return &ledger.Write{Intent: &ev,
		Budget: &ledger.Budget{At: at, Amount: dec("60"), Claims: []policy.Claim{
			{Key: "token:tok_1/daily/USDT/day:2025-01-06@UTC", Since: time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC), Limit: dec(limit)}}},
		Key: &ledger.Key{Record: rec, NotBefore: at.Add(-24 * time.Hour)}}
}

// intents returns the request ids of the intent records in the database.
func intents(t testing.TB, path string) map[string]bool {
	t.Helper()
	r, err := audit.OpenSQLiteReader(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := map[string]bool{}
	if err := r.Scan(context.Background(), 1, func(rec audit.Record) error {
		if rec.Kind == audit.KindIntent {
			got[rec.RequestID] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func verifyLog(t testing.TB, path string) audit.Report {
	t.Helper()
	r, err := audit.OpenSQLiteReader(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := audit.Verify(context.Background(), r, benchKeys().PublicKey())
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	return rep
}

// TestLedgerOpen: one write stores the reservation, the claim and the
// intent record; a refusal stores none of them, the budget first.
func TestLedgerOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, log := openLedger(t, path)
	lg := db.Ledger()

	w := ledgerWrite(1, "100")
	if err := lg.Open(ctx, w); err != nil {
		t.Fatal(err)
	}
	if len(w.Budget.IDs) != 1 {
		t.Fatalf("ids %v", w.Budget.IDs)
	}
	if rec, err := db.Idempotency().Get(ctx, "tok_1/binance", "k1"); err != nil || rec.Owner != "o1" || rec.State != idem.StatePending {
		t.Fatalf("claim: %+v %v", rec, err)
	}

	for _, tc := range []struct {
		name string
		w    *ledger.Write
		want error
	}{
		// 60 + 60 > 100: refused by the budget, although its key is
		// free: nothing written.
		{"budget", ledgerWrite(2, "100"), nil},
		// The same key again within the limit: taken.
		{"key", func() *ledger.Write { w := ledgerWrite(1, "1000"); w.Intent.RequestID = "r1-again"; return w }(), ledger.ErrKeyTaken},
		// Over budget and a taken key: the budget answers (the policy
		// comes first).
		{"budget before key", ledgerWrite(1, "100"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := lg.Open(ctx, tc.w)
			var ex *policy.ExceededError
			switch {
			case tc.want == nil && !errors.As(err, &ex):
				t.Fatalf("err %v, want ExceededError", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.w.Budget.IDs != nil {
				t.Fatalf("ids %v after a refusal", tc.w.Budget.IDs)
			}
		})
	}
	w3 := ledgerWrite(1, "1000")
	if err := lg.Open(ctx, w3); !errors.Is(err, ledger.ErrKeyTaken) || w3.Key.Stored.Owner != "o1" {
		t.Fatalf("taken: %v %+v", err, w3.Key.Stored)
	}
	if _, err := db.Idempotency().Get(ctx, "tok_1/binance", "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused write claimed its key: %v", err)
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if got := intents(t, path); len(got) != 1 || !got["r1"] {
		t.Fatalf("intent records %v, want r1 only", got)
	}
	if rep := verifyLog(t, path); rep.Records != 1 || rep.Unsigned != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	// Without an audit log in the database, an intent is refused.
	db2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.Ledger().Open(ctx, ledgerWrite(9, "1000")); !errors.Is(err, ledger.ErrNoAuditLog) {
		t.Fatalf("no audit log: %v", err)
	}
}

// TestLedgerBudgetHoldsConcurrently: 100 concurrent 60 USDT orders
// against 1000 USDT: exactly 16 opened, each with its intent record, also
// when the database is reopened half way (the writer's memory of the
// window is rebuilt from the store).
func TestLedgerBudgetHoldsConcurrently(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	ok := 0
	for half := range 2 {
		db, log := openLedger(t, path)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				err := db.Ledger().Open(ctx, ledgerWrite(half*50+i, "1000"))
				var ex *policy.ExceededError
				switch {
				case err == nil:
					mu.Lock()
					ok++
					mu.Unlock()
				case !errors.As(err, &ex):
					t.Errorf("unexpected: %v", err)
				}
			})
		}
		wg.Wait()
		if err := log.Close(ctx); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	if ok != 16 {
		t.Fatalf("%d orders opened, want 16", ok)
	}
	if got := intents(t, path); len(got) != 16 {
		t.Fatalf("%d intent records, want 16", len(got))
	}
	verifyLog(t, path)
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkTotals(t, db)
}

// TestLedgerRollbackKeepsChain: a batch that cannot commit stores none of
// its writes and puts the chain's head back; the next batch chains on
// from the last committed record. A deferred foreign key makes the
// commit itself fail.
func TestLedgerRollbackKeepsChain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, log := openLedger(t, path)
	if err := db.Ledger().Open(ctx, ledgerWrite(1, "1000")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec(`CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
		CREATE TRIGGER poison AFTER INSERT ON audit_records WHEN (SELECT count(*) FROM audit_records) = 3
		BEGIN INSERT INTO child VALUES (42); END`); err != nil {
		t.Fatal(err)
	}
	log.Record(ctx, audit.Event{RequestID: "outcome-1"})                  // record 2
	if err := db.Ledger().Open(ctx, ledgerWrite(2, "1000")); err == nil { // record 3: its batch cannot commit
		t.Fatal("a write whose commit failed reported success")
	}
	if log.Healthy() == nil {
		t.Fatal("a failed commit left the log healthy")
	}
	if _, err := db.SQL().Exec(`DROP TRIGGER poison`); err != nil {
		t.Fatal(err)
	}
	if err := db.Ledger().Open(ctx, ledgerWrite(3, "1000")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Idempotency().Get(ctx, "tok_1/binance", "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failed write's claim is stored: %v", err)
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	got := intents(t, path)
	if len(got) != 2 || !got["r1"] || !got["r3"] {
		t.Fatalf("intents %v, want r1 and r3", got)
	}
	if st := log.Stats(); st.Failures == 0 {
		t.Fatalf("stats %+v: the failed batch must count", st)
	}
	verifyLog(t, path)
}

const ledgerCrashEnv = "KEYSTILE_LEDGER_CRASH_CHILD"

// TestLedgerCrashChild is the child of TestLedgerCrash: orders from
// several goroutines — the ledger write, then (without waiting) the
// stored answer, a release for every third, the outcome record — printing
// each order's number once Open returned nil, until it is killed.
func TestLedgerCrashChild(t *testing.T) {
	path := os.Getenv(ledgerCrashEnv)
	if path == "" {
		t.Skip("only run as the child of TestLedgerCrash")
	}
	ctx := context.Background()
	db, log := openLedger(t, path)
	m, err := idem.New(idem.Options{Store: db.Idempotency(), Secret: []byte("0123456789abcdef0123456789abcdef"), PruneEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g * 1_000_000; ; i++ {
				w := ledgerWrite(i, "1000000000")
				tk, _, err := m.Prepare(ctx, idem.Key{Scope: w.Key.Record.Scope, Value: w.Key.Record.Key}, w.Key.Record.Fingerprint, w.Key.Record.ClientOrderID)
				if err != nil {
					continue
				}
				w.Key.Record, w.Key.NotBefore = tk.Claim()
				if err := db.Ledger().Open(ctx, w); err != nil {
					tk.Forget()
					continue
				}
				mu.Lock()
				fmt.Fprintln(out, i)
				out.Flush()
				mu.Unlock()
				_ = tk.DoneLater(ctx, idem.Replay{Status: 200, Body: []byte(`{"orderId":1}`)})
				if i%3 == 0 {
					_ = db.Budgets().Release(ctx, w.Budget.IDs)
				}
				log.Record(ctx, audit.Event{RequestID: w.Intent.RequestID, Decision: audit.Allow, Status: 200})
			}
		})
	}
	wg.Wait()
}

// TestLedgerCrash kills a process with SIGKILL while it opens and settles
// orders. Every order it was told is open has its intent record, its
// claim and its budget entry (released ones excepted); no order has one
// of them without the others (one transaction); the audit chain verifies;
// the budget totals match the entries; and the ledger carries on after
// reopening, chaining on from the stored head.
func TestLedgerCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-execs the test binary")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerCrashChild$", "-test.count=1") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), ledgerCrashEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	acked := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for sc.Scan() {
		acked[strings.TrimSpace(sc.Text())] = true
		if len(acked) == 800 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("child too slow")
		}
	}
	_ = cmd.Wait()
	if len(acked) < 800 {
		t.Fatalf("the child acknowledged %d orders", len(acked))
	}
	rep := verifyLog(t, path)
	got := intents(t, path)

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]bool{}
	rows, err := db.SQL().QueryContext(ctx, `SELECT key FROM idempotency`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		claims[strings.TrimPrefix(k, "k")] = true
	}
	rows.Close()
	var entries int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM budget_entries`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	for i := range acked {
		if !got["r"+i] || !claims[i] {
			t.Fatalf("order %s acknowledged: intent %v, claim %v", i, got["r"+i], claims[i])
		}
	}
	for i := range claims {
		if !got["r"+i] {
			t.Fatalf("claim %s stored without its intent record", i)
		}
	}
	if len(got) != len(claims) {
		t.Fatalf("%d intent records, %d claims: one write must store both", len(got), len(claims))
	}
	if entries > len(claims) || entries < len(claims)*2/3-1 {
		t.Fatalf("%d budget entries for %d orders (every third released)", entries, len(claims))
	}
	checkTotals(t, db)
	db.Close()
	t.Logf("%d orders acknowledged, %d stored, %d records, last checkpoint %d, %d unsigned",
		len(acked), len(claims), rep.Records, rep.LastCheckpointSeq, rep.Unsigned)

	// The ledger carries on: the chain resumes from the stored head.
	db, log := openLedger(t, path)
	if err := db.Ledger().Open(ctx, ledgerWrite(-1, "1000000000")); err != nil {
		t.Fatal(err)
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if rep2 := verifyLog(t, path); rep2.Records != rep.Records+1 || rep2.Unsigned != 0 {
		t.Fatalf("after resume: %+v (before %+v)", rep2, rep)
	}
}

// TestLedgerSeesOtherWriters: two processes' worth of handles on one
// file. Each writer keeps budget windows and the chain's head in memory;
// a change committed by the other (PRAGMA data_version) makes it read them
// again, so the limit holds across both and the chain stays one chain.
func TestLedgerSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	a, logA := openLedger(t, path)
	b, logB := openLedger(t, path)
	defer a.Close()
	defer b.Close()
	// 1000 USDT: 8 orders of 60 from each handle, alternating, then one
	// more from each: 16 fit, the 17th does not whichever handle sends it.
	for i := range 16 {
		db := a
		if i%2 == 1 {
			db = b
		}
		if err := db.Ledger().Open(ctx, ledgerWrite(i, "1000")); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	for _, db := range []*sqlite.DB{a, b} {
		var ex *policy.ExceededError
		if err := db.Ledger().Open(ctx, ledgerWrite(100, "1000")); !errors.As(err, &ex) || !ex.Used.Equal(dec("960")) {
			t.Fatalf("17th order: %v", err)
		}
	}
	if err := logA.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := logB.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := verifyLog(t, path); rep.Records != 16 {
		t.Fatalf("verify: %+v", rep)
	}
	checkTotals(t, a)
}
