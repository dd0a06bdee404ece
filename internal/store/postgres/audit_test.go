package postgres

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/ledger"
)

// The audit tests are in the package so that they can drive appendIntent,
// the seam the ledger writes an order's intent through.

// appAuditLog is app.AuditLog (internal/app/audit.go), which the server
// holds its audit log as; copied, since app may import this package.
type appAuditLog interface {
	audit.Sink
	Intent(ctx context.Context, e audit.Event) error
	Stats() audit.Stats
	Healthy() error
	Close(ctx context.Context) error
	TokenHash(id string) string
	Action(ctx context.Context, e audit.Event) error
	Detect(ctx context.Context, e audit.Event)
}

var _ appAuditLog = (*AuditLog)(nil)

// auditDSN is a DSN for a fresh schema of the server named by
// KEYSTILE_TEST_POSTGRES, dropped when the test ends.
func auditDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("KEYSTILE_TEST_POSTGRES")
	if base == "" {
		t.Skip("KEYSTILE_TEST_POSTGRES is not set: skipping the PostgreSQL audit log tests (e.g. KEYSTILE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn, drop, err := TestSchema(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return dsn
}

// auditReplica opens a pool on dsn (migrating it): one gateway replica.
func auditReplica(t testing.TB, dsn string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := Open(ctx, Options{DSN: dsn, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// auditKeys are the keys every replica derives from the shared vault.
func auditKeys() audit.Keys {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	return audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(seed), Identity: bytes.Repeat([]byte{9}, 32)}
}

func openAudit(t testing.TB, d *DB, every int) *AuditLog {
	t.Helper()
	l, err := d.OpenAuditLog(context.Background(), AuditOptions{Keys: auditKeys(), CheckpointEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func auditEvent(id string) audit.Event {
	return audit.Event{
		RequestID: id, TokenID: "tok_pub_1", Source: "192.0.2.10", Venue: "binance",
		Method: "POST", Path: "/api/v3/order", Operation: "order.create", Decision: audit.Allow,
		Instrument: "BTCUSDT", Side: "BUY", OrderType: "LIMIT", Quantity: "0.01", Price: "50000",
		Notional: "500", Status: 200, Upstream: 200,
	}
}

// ledgerIntent writes e's intent the way the ledger does: in a
// transaction of the caller's, with fn run after it (fail: roll back).
func ledgerIntent(ctx context.Context, d *DB, e audit.Event, fail error) error {
	l := d.intentLog()
	if l == nil {
		return errors.New("no audit log open")
	}
	var after func(bool)
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if after, err = l.appendIntent(ctx, tx, e); err != nil {
			return err
		}
		return fail
	})
	if after != nil {
		after(err == nil)
	}
	return err
}

// verifyAudit runs audit.Verify over the database's tables.
func verifyAudit(t testing.TB, d *DB) (audit.Report, error) {
	t.Helper()
	return audit.Verify(context.Background(), d.AuditReader(), auditKeys().PublicKey())
}

// scanAudit returns the stored records in seq order.
func scanAudit(t testing.TB, d *DB) []audit.Record {
	t.Helper()
	var recs []audit.Record
	if err := d.AuditReader().Scan(context.Background(), 1, func(r audit.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkGapless fails unless recs are seqs 1..len(recs), each once.
func checkGapless(t testing.TB, recs []audit.Record) {
	t.Helper()
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record #%d has seq %d (want %d): gap or duplicate", i, r.Seq, i+1)
		}
	}
}

var errRefused = errors.New("budget exceeded")

func TestAuditReplicasOneChain(t *testing.T) {
	dsn := auditDSN(t)
	const replicas, perReplica, workers = 3, 300, 6
	dbs := make([]*DB, replicas)
	logs := make([]*AuditLog, replicas)
	for i := range dbs {
		dbs[i] = auditReplica(t, dsn)
		logs[i] = openAudit(t, dbs[i], 50)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, replicas*perReplica)
	for r := range replicas {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perReplica; i += workers {
					e := auditEvent(fmt.Sprintf("r%d-%d", r, i))
					var err error
					switch i % 6 {
					case 0:
						err = logs[r].Intent(ctx, e)
					case 1:
						logs[r].Record(ctx, e)
					case 2:
						e.Actor, e.Reason = "admin", "test"
						err = logs[r].Action(ctx, e)
					case 3:
						e.Evidence = `{"z":3}`
						logs[r].Detect(ctx, e)
					case 4:
						err = ledgerIntent(ctx, dbs[r], e, nil)
					case 5: // the ledger refuses the order: its intent goes with it
						if err = ledgerIntent(ctx, dbs[r], e, errRefused); errors.Is(err, errRefused) {
							err = nil
						}
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", e.RequestID, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var total uint64
	for i, l := range logs {
		if err := l.Close(ctx); err != nil {
			t.Fatalf("close replica %d: %v", i, err)
		}
		st := l.Stats()
		if st.Dropped != 0 || st.Failures != 0 {
			t.Errorf("replica %d: %d dropped, %d failures", i, st.Dropped, st.Failures)
		}
		total += st.Records
	}
	const stored = replicas * perReplica * 5 / 6
	if total != stored {
		t.Errorf("replicas stored %d records, want %d", total, stored)
	}
	rep, err := verifyAudit(t, dbs[0])
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Records != stored || rep.Unsigned != 0 || rep.Checkpoints < stored/50 {
		t.Errorf("report %+v: want %d records, all signed, >= %d checkpoints", rep, stored, stored/50)
	}
	recs := scanAudit(t, dbs[1])
	checkGapless(t, recs)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.RequestID]++
	}
	for r := range replicas {
		for i := range perReplica {
			want := 1
			if i%6 == 5 {
				want = 0
			}
			if id := fmt.Sprintf("r%d-%d", r, i); seen[id] != want {
				t.Errorf("%s stored %d times, want %d", id, seen[id], want)
			}
		}
	}
}

func TestAuditTamperFailsVerify(t *testing.T) {
	dsn := auditDSN(t)
	d := auditReplica(t, dsn)
	l := openAudit(t, d, 10)
	ctx := context.Background()
	for i := range 25 {
		if err := l.Intent(ctx, auditEvent(fmt.Sprintf("req-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyAudit(t, d); err != nil {
		t.Fatalf("untouched log: %v", err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := d.pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	wantBad := func(seq uint64) {
		t.Helper()
		_, err := verifyAudit(t, d)
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.Seq != seq {
			t.Fatalf("verify: %v, want a VerifyError at record %d", err, seq)
		}
	}
	exec(`CREATE TABLE audit_records_saved AS SELECT * FROM audit_records`)
	var orig []byte
	if err := d.pool.QueryRow(ctx, `SELECT data FROM audit_records WHERE seq = 7`).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(orig, []byte(`"price":"50000"`))
	if i < 0 {
		t.Fatalf("record 7 has no price: %s", orig)
	}
	t.Run("byte changed", func(t *testing.T) {
		bad := bytes.Clone(orig)
		bad[i+len(`"price":"`)] = '6' // 60000
		exec(`UPDATE audit_records SET data = $1 WHERE seq = 7`, bad)
		wantBad(7)
		exec(`UPDATE audit_records SET data = $1 WHERE seq = 7`, orig)
		if _, err := verifyAudit(t, d); err != nil {
			t.Fatalf("restored: %v", err)
		}
	})
	t.Run("row deleted", func(t *testing.T) {
		exec(`DELETE FROM audit_records WHERE seq = 5`)
		wantBad(5)
		exec(`INSERT INTO audit_records (seq, data) SELECT seq, data FROM audit_records_saved WHERE seq = 5`)
		if _, err := verifyAudit(t, d); err != nil {
			t.Fatalf("restored: %v", err)
		}
	})
	t.Run("checkpoint altered", func(t *testing.T) {
		var cp []byte
		if err := d.pool.QueryRow(ctx, `SELECT data FROM audit_checkpoints WHERE seq = 10`).Scan(&cp); err != nil {
			t.Fatal(err)
		}
		bad := bytes.Replace(cp, []byte(`"checkpoint":10,`), []byte(`"checkpoint":10 ,`), 1)
		if bytes.Equal(bad, cp) {
			t.Fatalf("checkpoint 10: %s", cp)
		}
		exec(`UPDATE audit_checkpoints SET data = $1 WHERE seq = 10`, bad)
		wantBad(10)
		exec(`UPDATE audit_checkpoints SET data = $1 WHERE seq = 10`, cp)
	})
	t.Run("tail deleted", func(t *testing.T) {
		// The final checkpoint names record 25.
		exec(`DELETE FROM audit_records WHERE seq >= 23`)
		wantBad(23)
		// The head row still names record 25: the log refuses to continue.
		d.setIntentLog(nil)
		if _, err := d.OpenAuditLog(ctx, AuditOptions{Keys: auditKeys()}); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("open over a cut log: %v, want truncated", err)
		}
	})
	t.Run("unsigned tail deleted", func(t *testing.T) {
		// Records 21..25 follow the checkpoint at 20: cut with the final
		// checkpoint, Verify sees a shorter, intact log; the head row
		// still names record 25.
		exec(`DELETE FROM audit_records WHERE seq > 20`)
		exec(`DELETE FROM audit_checkpoints WHERE seq > 20`)
		rep, err := verifyAudit(t, d)
		if err != nil || rep.LastSeq != 20 {
			t.Fatalf("verify: %+v %v (want an intact log of 20)", rep, err)
		}
		h, err := d.AuditReader().Head(ctx)
		if err != nil || h.Seq != 25 {
			t.Fatalf("head %+v %v, want record 25", h, err)
		}
	})
}

func TestAuditIntentRollbackLeavesNoGap(t *testing.T) {
	dsn := auditDSN(t)
	a, b := auditReplica(t, dsn), auditReplica(t, dsn)
	la, lb := openAudit(t, a, 4), openAudit(t, b, 4)
	ctx := context.Background()
	boom := errors.New("budget exceeded")
	if err := ledgerIntent(ctx, a, auditEvent("kept-1"), nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the third would have been seq 4: a checkpoint, rolled back too
		if err := ledgerIntent(ctx, a, auditEvent(fmt.Sprintf("rolled-%d", i)), boom); !errors.Is(err, boom) {
			t.Fatalf("rolled back tx: %v", err)
		}
	}
	if err := lb.Intent(ctx, auditEvent("kept-2")); err != nil {
		t.Fatal(err)
	}

	// While the ledger's transaction holds the head, the other replica's
	// intent waits for it, then continues after it.
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := la.appendIntent(ctx, tx, auditEvent("kept-3"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- lb.Intent(ctx, auditEvent("kept-4")) }()
	select {
	case err := <-done:
		t.Fatalf("intent on replica b finished (%v) while replica a's transaction held the head", err)
	case <-time.After(150 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	after(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if st := la.Stats(); st.Records != 2 {
		t.Errorf("replica a counted %d records, want 2 (rolled back ones are not)", st.Records)
	}
	recs := scanAudit(t, a)
	checkGapless(t, recs)
	var got []string
	for _, r := range recs {
		got = append(got, r.RequestID)
	}
	if want := "kept-1 kept-2 kept-3 kept-4"; strings.Join(got, " ") != want {
		t.Errorf("stored %q, want %q", got, want)
	}
	if rep, err := verifyAudit(t, a); err != nil || rep.LastCheckpointSeq != 4 {
		t.Errorf("verify: %+v %v (want the checkpoint at 4)", rep, err)
	}
}

func TestAuditKilledWriterLeavesVerifiableChain(t *testing.T) {
	dsn := auditDSN(t)
	a, b, c := auditReplica(t, dsn), auditReplica(t, dsn), auditReplica(t, dsn)
	la, lb, lc := openAudit(t, a, 7), openAudit(t, b, 7), openAudit(t, c, 7)
	ctx := context.Background()

	// Replica b keeps writing throughout.
	stop := make(chan struct{})
	var bWrote atomic.Int64
	bDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				bDone <- nil
				return
			default:
			}
			if err := lb.Intent(ctx, auditEvent(fmt.Sprintf("b-%d", i))); err != nil {
				bDone <- err
				return
			}
			bWrote.Add(1)
			if i > 2000 {
				bDone <- nil
				return
			}
		}
	}()

	t.Run("backend killed holding the head", func(t *testing.T) {
		tx, err := a.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		var pid int32
		if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if _, err := la.appendIntent(ctx, tx, auditEvent("killed")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err == nil {
			t.Fatal("commit on a terminated backend succeeded")
		}
	})
	t.Run("context cancelled mid-transaction", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		err := a.inTx(cctx, func(tx pgx.Tx) error {
			if _, err := la.appendIntent(cctx, tx, auditEvent("cancelled")); err != nil {
				return err
			}
			cancel()
			_, err := tx.Exec(cctx, `SELECT 1`)
			return err
		})
		if err == nil {
			t.Fatal("transaction after cancel committed")
		}
	})
	t.Run("pool closed mid-write", func(t *testing.T) {
		var wg sync.WaitGroup
		var wrote atomic.Int64
		started := make(chan struct{})
		var once sync.Once
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer once.Do(func() { close(started) }) // a writer that stops early
				for i := range 200 {
					if lc.Intent(ctx, auditEvent(fmt.Sprintf("c-%d-%d", w, i))) != nil {
						return
					}
					if wrote.Add(1) == 20 {
						once.Do(func() { close(started) })
					}
				}
			}()
		}
		<-started
		_ = c.Close()
		wg.Wait()
		if wrote.Load() < 20 {
			t.Fatalf("replica c wrote %d intents before its pool closed, want >= 20", wrote.Load())
		}
		if err := lc.Intent(ctx, auditEvent("c-after")); err == nil {
			t.Fatal("intent on a closed pool succeeded")
		}
	})
	close(stop)
	if err := <-bDone; err != nil {
		t.Fatalf("replica b: %v", err)
	}
	if bWrote.Load() == 0 {
		t.Fatal("replica b wrote nothing")
	}
	rep, err := verifyAudit(t, b)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	recs := scanAudit(t, b)
	checkGapless(t, recs)
	for _, r := range recs {
		if r.RequestID == "killed" || r.RequestID == "cancelled" || r.RequestID == "c-after" {
			t.Errorf("%s was stored (seq %d)", r.RequestID, r.Seq)
		}
	}
	// The survivors carry on: a's writer and ledger path still append.
	if err := la.Intent(ctx, auditEvent("a-after")); err != nil {
		t.Fatal(err)
	}
	if err := ledgerIntent(ctx, a, auditEvent("a-ledger-after"), nil); err != nil {
		t.Fatal(err)
	}
	if rep2, err := verifyAudit(t, a); err != nil || rep2.Records != rep.Records+2 {
		t.Fatalf("verify after: %+v %v (before %+v)", rep2, err, rep)
	}
}

func TestAuditRestartResumesChain(t *testing.T) {
	dsn := auditDSN(t)
	ctx := context.Background()
	d1 := auditReplica(t, dsn)
	l1 := openAudit(t, d1, 100)
	for i := range 10 {
		if err := l1.Intent(ctx, auditEvent(fmt.Sprintf("first-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifyAudit(t, d1); err != nil || rep.Unsigned != 0 || rep.LastCheckpointSeq != 10 {
		t.Fatalf("after a clean stop: %+v %v (want the tail signed)", rep, err)
	}
	if err := l1.Close(ctx); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("second close: %v", err)
	}
	if d1.intentLog() != nil {
		t.Error("closed log still attached to the DB")
	}

	// A crash: the process goes away without Close.
	d2 := auditReplica(t, dsn)
	l2 := openAudit(t, d2, 100)
	if _, err := d2.OpenAuditLog(ctx, AuditOptions{Keys: auditKeys()}); !errors.Is(err, errAuditOpen) {
		t.Errorf("second OpenAuditLog on one pool: %v", err)
	}
	for i := range 10 {
		if err := l2.Intent(ctx, auditEvent(fmt.Sprintf("second-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	_ = d2.Close()

	d3 := auditReplica(t, dsn)
	l3 := openAudit(t, d3, 100)
	if err := l3.Intent(ctx, auditEvent("third")); err != nil {
		t.Fatal(err)
	}
	if err := l3.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyAudit(t, d3)
	if err != nil || rep.Records != 21 || rep.Unsigned != 0 {
		t.Fatalf("after restarts: %+v %v", rep, err)
	}
	checkGapless(t, scanAudit(t, d3))
}

func TestAuditCopiedFromSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	st, err := audit.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := audit.Open(ctx, audit.Options{Store: st, Keys: auditKeys(), CheckpointEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := sl.Intent(ctx, auditEvent(fmt.Sprintf("sqlite-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sl.Close(ctx); err != nil {
		t.Fatal(err)
	}
	src, err := audit.OpenSQLiteReader(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	continued := func(t *testing.T, d *DB) {
		t.Helper()
		l := openAudit(t, d, 5)
		if err := ledgerIntent(ctx, d, auditEvent("postgres-1"), nil); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := verifyAudit(t, d)
		if err != nil || rep.Records != 13 || rep.Unsigned != 0 {
			t.Fatalf("copied log continued: %+v %v", rep, err)
		}
		checkGapless(t, scanAudit(t, d))
	}
	t.Run("table copy", func(t *testing.T) {
		// Same tables, same columns, same bytes; no head row.
		d := auditReplica(t, auditDSN(t))
		if err := src.Scan(ctx, 1, func(r audit.Record) error {
			_, err := d.pool.Exec(ctx, `INSERT INTO audit_records (seq, data) VALUES ($1, $2)`, int64(r.Seq), r.Raw)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := src.Checkpoints(ctx, func(c audit.Checkpoint) error {
			_, err := d.pool.Exec(ctx, `INSERT INTO audit_checkpoints (seq, data) VALUES ($1, $2)`, int64(c.Seq), c.Raw)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		continued(t, d)
	})
	t.Run("ImportAudit", func(t *testing.T) {
		d := auditReplica(t, auditDSN(t))
		n, err := d.ImportAudit(ctx, src)
		if err != nil || n != 12 {
			t.Fatalf("import: %d, %v (want 12 records)", n, err)
		}
		if n, err := d.ImportAudit(ctx, src); err != nil || n != 0 {
			t.Fatalf("second import: %d, %v (want nothing copied)", n, err)
		}
		continued(t, d)
	})
	t.Run("altered last record", func(t *testing.T) {
		d := auditReplica(t, auditDSN(t))
		if _, err := d.ImportAudit(ctx, src); err != nil {
			t.Fatal(err)
		}
		if _, err := d.pool.Exec(ctx, `UPDATE audit_records SET data = convert_to(replace(convert_from(data, 'UTF8'), '50000', '50001'), 'UTF8') WHERE seq = 12`); err != nil {
			t.Fatal(err)
		}
		if _, err := d.OpenAuditLog(ctx, AuditOptions{Keys: auditKeys()}); err == nil || !strings.Contains(err.Error(), "altered") {
			t.Fatalf("open over an altered last record: %v", err)
		}
	})
}

func TestAuditCanaryTokenIDNeverStored(t *testing.T) {
	dsn := auditDSN(t)
	d := auditReplica(t, dsn)
	l := openAudit(t, d, 3)
	ctx := context.Background()
	const rawID, rawSource = "tokpub-CANARY-5e1d", "198.51.100.73"
	e := auditEvent("canary")
	e.TokenID, e.Source = rawID, rawSource
	e.Error = "upstream said kst_live_AbC123xyz is bad" // a token a caller let slip
	if err := l.Intent(ctx, e); err != nil {
		t.Fatal(err)
	}
	l.Record(ctx, e)
	if err := ledgerIntent(ctx, d, e, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var all []byte
	rows, err := d.pool.Query(ctx, `SELECT data FROM audit_records UNION ALL SELECT data FROM audit_checkpoints`)
	if err != nil {
		t.Fatal(err)
	}
	datas, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range datas {
		all = append(all, b...)
	}
	if h := l.TokenHash(rawID); h == "" || bytes.Count(all, []byte(h)) != 3 {
		t.Errorf("token HMAC %q appears %d times, want 3", h, bytes.Count(all, []byte(h)))
	}
	for _, secret := range []string{rawID, rawSource, "kst_live_AbC123xyz"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("%q stored in the clear", secret)
		}
	}
}

// BenchmarkAuditIntent: parallel callers spread over replicas (pools),
// each waiting for its intent to be durable; every replica's writer
// group-commits, all on one chain. Reports records/s, commits/s and the
// mean batch.
func BenchmarkAuditIntent(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		for _, callers := range []int{16, 256} {
			b.Run(fmt.Sprintf("replicas=%d/callers=%d", replicas, callers), func(b *testing.B) {
				dsn := auditDSN(b)
				logs := make([]*AuditLog, replicas)
				for i := range logs {
					logs[i] = openAudit(b, auditReplica(b, dsn), 0)
				}
				ctx := context.Background()
				var next atomic.Int64
				b.SetParallelism(max(callers/runtime.GOMAXPROCS(0), 1))
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					l := logs[int(next.Add(1))%replicas]
					e := auditEvent("bench")
					for pb.Next() {
						if err := l.Intent(ctx, e); err != nil {
							b.Error(err)
							return
						}
					}
				})
				el := time.Since(start).Seconds()
				b.StopTimer()
				var recs, batches uint64
				for _, l := range logs {
					st := l.Stats()
					recs += st.Records
					batches += st.Batches
				}
				b.ReportMetric(float64(recs)/el, "records/s")
				b.ReportMetric(float64(batches)/el, "commits/s")
				b.ReportMetric(float64(recs)/float64(max(batches, 1)), "records/commit")
			})
		}
	}
}

// BenchmarkAuditLedgerIntent: the ledger's path (Ledger.Open of a write
// with only an intent), parallel over replicas: the head row lock
// serializes their transactions, each replica's batches share one.
func BenchmarkAuditLedgerIntent(b *testing.B) {
	const replicas = 3
	dsn := auditDSN(b)
	dbs := make([]*DB, replicas)
	for i := range dbs {
		dbs[i] = auditReplica(b, dsn)
		openAudit(b, dbs[i], 0)
	}
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		d := dbs[int(next.Add(1))%replicas]
		e := auditEvent("bench")
		for pb.Next() {
			if err := d.Ledger().Open(ctx, &ledger.Write{Intent: &e}); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "records/s")
}

func TestAuditStatsMirrorsHealth(t *testing.T) {
	dsn := auditDSN(t)
	ctx := context.Background()
	d := auditReplica(t, dsn)
	var mirrored bytes.Buffer
	var observed atomic.Int64
	l, err := d.OpenAuditLog(ctx, AuditOptions{
		Keys: auditKeys(), CheckpointEvery: 4, Mirrors: []audit.Mirror{audit.NewWriterMirror(&mirrored)},
		ObserveCommit: func(_ time.Duration, n int) { observed.Add(int64(n)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Intent(ctx, auditEvent("i")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l.Record(ctx, auditEvent(fmt.Sprintf("o-%d", i)))
	}
	e := auditEvent("d")
	e.Evidence = `{"why":"burst"}`
	l.Detect(ctx, e)
	if err := l.Action(ctx, auditEvent("a")); err != nil { // takes the queued records along
		t.Fatal(err)
	}
	if err := ledgerIntent(ctx, d, auditEvent("ledger"), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Records != 7 || st.Checkpoints != 2 || observed.Load() != 7 || st.Dropped != 0 || l.Healthy() != nil {
		t.Errorf("stats %+v, observed %d, healthy %v: want 7 records, 2 checkpoints (4 and the final 7)", st, observed.Load(), l.Healthy())
	}
	lines := strings.Split(strings.TrimSpace(mirrored.String()), "\n")
	if len(lines) != 9 || !strings.HasPrefix(lines[len(lines)-1], `{"checkpoint":7,`) {
		t.Errorf("mirrored %d lines (want 7 records and 2 checkpoints), last %q", len(lines), lines[len(lines)-1])
	}
	kinds := map[string]int{}
	for _, r := range scanAudit(t, d) {
		kinds[r.Kind]++
		if r.Kind == audit.KindDetect && r.Evidence != `{"why":"burst"}` {
			t.Errorf("detect evidence %q", r.Evidence)
		}
	}
	if kinds[audit.KindIntent] != 2 || kinds[audit.KindOutcome] != 3 || kinds[audit.KindDetect] != 1 || kinds[audit.KindAction] != 1 {
		t.Errorf("kinds %v", kinds)
	}

	// After Close: nothing more is taken.
	l.Record(ctx, auditEvent("late"))
	if l.Stats().Dropped != 1 {
		t.Errorf("record after close: %d dropped, want 1", l.Stats().Dropped)
	}
	if err := l.Intent(ctx, auditEvent("late")); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("intent after close: %v", err)
	}
	if _, err := l.appendIntent(ctx, nil, auditEvent("late")); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("appendIntent after close: %v", err)
	}

	// A replica whose database went away reports it.
	d2 := auditReplica(t, dsn)
	l2 := openAudit(t, d2, 4)
	_ = d2.Close()
	if err := l2.Intent(ctx, auditEvent("lost")); err == nil {
		t.Fatal("intent without a database succeeded")
	}
	l2.Record(ctx, auditEvent("lost-outcome"))
	_ = l2.Close(ctx) // drains the queue (and fails to sign)
	if st := l2.Stats(); l2.Healthy() == nil || st.Failures == 0 || st.Dropped != 1 || st.Records != 0 {
		t.Errorf("after losing the database: healthy %v, stats %+v", l2.Healthy(), st)
	}
	if rep, err := verifyAudit(t, d); err != nil || rep.Records != 7 {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

func TestAuditTimesNeverGoBackAcrossReplicas(t *testing.T) {
	dsn := auditDSN(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	open := func(skew time.Duration) *AuditLog {
		l, err := auditReplica(t, dsn).OpenAuditLog(ctx, AuditOptions{Keys: auditKeys(), CheckpointEvery: 2,
			Now: func() time.Time { return t0.Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close(ctx) })
		return l
	}
	ahead, behind := open(time.Minute), open(0)
	for i, l := range []*AuditLog{behind, ahead, behind, behind} {
		if err := l.Intent(ctx, auditEvent(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := behind.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []time.Time{t0, t0.Add(time.Minute), t0.Add(time.Minute), t0.Add(time.Minute)}
	recs := scanAudit(t, behind.d)
	if len(recs) != len(want) {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if !r.Time.Equal(want[i]) {
			t.Errorf("record %d timed %v, want %v", r.Seq, r.Time, want[i])
		}
	}
	var cpTimes []time.Time
	if err := behind.d.AuditReader().Checkpoints(ctx, func(c audit.Checkpoint) error {
		cpTimes = append(cpTimes, c.Time)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(cpTimes) != 2 || !cpTimes[1].Equal(t0.Add(time.Minute)) {
		t.Errorf("checkpoint times %v", cpTimes)
	}
	if _, err := verifyAudit(t, behind.d); err != nil {
		t.Fatal(err)
	}
}
