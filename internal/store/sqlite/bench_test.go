package sqlite_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
)

func benchDB(b *testing.B) *sqlite.DB {
	b.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "k.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

// parallel64 sets RunParallel to about 64 goroutines, a busy gateway's
// number of orders in flight.
func parallel64(b *testing.B) { b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) }

func benchIdemManager(b *testing.B, db *sqlite.DB) *idem.Manager {
	b.Helper()
	m, err := idem.New(idem.Options{Store: db.Idempotency(), Secret: []byte("0123456789abcdef0123456789abcdef"), PruneEvery: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	return m
}

var benchAnswer = idem.Replay{Status: 200, VenueOrderID: "28", Header: http.Header{"Content-Type": {"application/json"}},
	Body: []byte(`{"symbol":"BTCUSDT","orderId":28,"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","status":"NEW"}`)}

func beginDone(b *testing.B, m *idem.Manager, i int64) {
	ctx := context.Background()
	tk, _, err := m.Begin(ctx, idem.Key{Scope: "tok_1/binance", Value: fmt.Sprint("k", i)}, []byte("fp"), "cid")
	if err != nil {
		b.Error(err)
		return
	}
	if err := tk.Done(ctx, benchAnswer); err != nil {
		b.Error(err)
	}
}

// BenchmarkIdemBeginDone: one order's idempotency cost (a durable claim and
// a durable answer), one caller at a time.
func BenchmarkIdemBeginDone(b *testing.B) {
	m := benchIdemManager(b, benchDB(b))
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		i++
		beginDone(b, m, i)
	}
}

// BenchmarkIdemBeginDoneParallel: the same with 64 callers at once.
func BenchmarkIdemBeginDoneParallel(b *testing.B) {
	m := benchIdemManager(b, benchDB(b))
	b.ReportAllocs()
	parallel64(b)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			beginDone(b, m, n.Add(1))
		}
	})
}

// benchReserve reserves 1 USDT per call against a daily and a rolling
// 1-hour budget, with existing entries already in both windows.
func benchReserve(b *testing.B, parallel bool) {
	db := benchDB(b)
	s := db.Budgets()
	ctx := context.Background()
	t0 := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	claims := func(at time.Time) []policy.Claim {
		return []policy.Claim{
			{Key: "token:a/daily/USDT/day:2025-01-06@UTC", Since: t0.Add(-12 * time.Hour), Limit: dec("1000000000000")},
			{Key: "token:a/hourly/USDT/rolling:1h0m0s", Since: at.Add(-time.Hour), Limit: dec("1000000000000")},
		}
	}
	// 10,000 earlier orders spread over the last hour, 64 at a time.
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < 10000; i += 64 {
				at := t0.Add(-time.Hour + time.Duration(i)*360*time.Millisecond)
				if _, err := s.Reserve(ctx, at, dec("1"), claims(at)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			if _, err := s.Reserve(ctx, t0, dec("1"), claims(t0)); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	parallel64(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Reserve(ctx, t0, dec("1"), claims(t0)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBudgetReserve: Reserve on a day and a rolling budget that hold
// 10,000 entries each, one caller at a time.
func BenchmarkBudgetReserve(b *testing.B) { benchReserve(b, false) }

// BenchmarkBudgetReserveParallel: the same with 64 callers at once.
func BenchmarkBudgetReserveParallel(b *testing.B) { benchReserve(b, true) }

// BenchmarkOrderWrites: the main database's share of one order with a
// budget and an idempotency key, 64 orders in flight: the budget
// reservation and the key claim (concurrently, as the gateway makes them),
// then the stored answer. Besides ns/op it reports how the group-commit
// writer spends its time (WriterStats): writes per batch, statement time
// per write, commit time per batch, slow commits, and the share of wall
// time it is busy.
func BenchmarkOrderWrites(b *testing.B) {
	db := benchDB(b)
	m := benchIdemManager(b, db)
	budgets := db.Budgets()
	ctx := context.Background()
	t0 := time.Now()
	claims := []policy.Claim{{Key: "token:a/daily/USDT/day", Since: t0.Add(-time.Hour), Limit: dec("1000000000000")}}
	var n atomic.Int64
	parallel64(b)
	before := db.WriterStats()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			reserved := make(chan error, 1)
			go func() {
				_, err := budgets.Reserve(ctx, t0, dec("1"), claims)
				reserved <- err
			}()
			tk, _, err := m.Begin(ctx, idem.Key{Scope: "tok_1/binance", Value: fmt.Sprint("k", i)}, []byte("fp"), "cid")
			if rerr := <-reserved; rerr != nil || err != nil {
				b.Error(rerr, err)
				return
			}
			if err := tk.Done(ctx, benchAnswer); err != nil {
				b.Error(err)
				return
			}
		}
	})
	wall := time.Since(start)
	after := db.WriterStats()
	batches, writes := after.Batches-before.Batches, after.Writes-before.Writes
	busy, commit := after.Busy-before.Busy, after.Commit-before.Commit
	if batches == 0 || writes == 0 {
		b.Fatal("the writer ran no batch")
	}
	b.ReportMetric(float64(writes)/float64(batches), "writes/batch")
	b.ReportMetric(float64((busy-commit).Microseconds())/float64(writes), "µs-stmts/write")
	b.ReportMetric(float64(commit.Microseconds())/float64(batches), "µs-commit/batch")
	b.ReportMetric(float64(after.SlowCommits-before.SlowCommits)/float64(batches)*100, "%slow-commits")
	b.ReportMetric(float64(busy)/float64(wall)*100, "%writer-busy")
}

// benchKeys are fixed audit keys for benchmarks.
func benchKeys() audit.Keys {
	return audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), Identity: []byte("identity-key-for-benchmarks-0123")}
}

// BenchmarkLedger: the main database's whole share of one order under a
// policy with a daily budget and an idempotency key, 64 orders in
// flight: the ledger write (budget reservation, key claim and intent
// record: one transaction), then the settlement the gateway makes
// without waiting (the answer stored for replays, the outcome record).
// Besides ns/op it reports how the group-commit writer spends its time
// (WriterStats), as BenchmarkOrderWrites does.
func BenchmarkLedger(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	log, err := db.OpenAuditLog(ctx, sqlite.AuditOptions{Keys: benchKeys()})
	if err != nil {
		b.Fatal(err)
	}
	m := benchIdemManager(b, db)
	lg := db.Ledger()
	t0 := time.Now()
	claims := []policy.Claim{{Key: "token:a/daily/USDT/day:2025-01-06@UTC", Since: t0.Add(-time.Hour), Limit: dec("1000000000000")}}
	var n atomic.Int64
	parallel64(b)
	before := db.WriterStats()
	cpu0 := processCPU()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			k := idem.Key{Scope: "tok_1/binance", Value: fmt.Sprint("key:bench-", i)}
			tk, _, err := m.Prepare(ctx, k, []byte("fp"), "cid")
			if err != nil {
				b.Error(err)
				return
			}
			rec, nb := tk.Claim()
			ev := audit.Event{RequestID: fmt.Sprint("r", i), TokenID: "tok_1", Source: "127.0.0.1", Venue: "binance",
				Method: "POST", Path: "/api/v3/order", Operation: "order.place", Instrument: "BTCUSDT", Side: "BUY",
				OrderType: "LIMIT", Quantity: "0.001", Price: "60000", Notional: "60 USDT", ClientOrderID: "cid"}
			w := &ledger.Write{Intent: &ev, Budget: &ledger.Budget{At: t0, Amount: dec("60"), Claims: claims},
				Key: &ledger.Key{Record: rec, NotBefore: nb}}
			if err := lg.Open(ctx, w); err != nil {
				tk.Forget()
				b.Error(err)
				return
			}
			if err := tk.DoneLater(ctx, benchAnswer); err != nil {
				b.Error(err)
				return
			}
			ev.Decision, ev.Status, ev.Upstream = audit.Allow, 200, 200
			log.Record(ctx, ev)
		}
	})
	if err := m.Close(); err != nil { // waits for the stored answers
		b.Fatal(err)
	}
	wall := time.Since(start)
	cpu := processCPU() - cpu0
	after := db.WriterStats()
	batches, writes := after.Batches-before.Batches, after.Writes-before.Writes
	busy, commit := after.Busy-before.Busy, after.Commit-before.Commit
	if batches == 0 || writes == 0 {
		b.Fatal("the writer ran no batch")
	}
	b.ReportMetric(float64(writes)/float64(batches), "writes/batch")
	b.ReportMetric(float64(commit.Microseconds())/float64(batches), "µs-commit/batch")
	b.ReportMetric(float64(busy)/float64(wall)*100, "%writer-busy")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/order")
}

// processCPU is the process's user + system CPU time: on a shared
// machine a steadier measure of work than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAuditIntent: the audit log kept in the database, many parallel
// callers each waiting for their intent record to be durable (group
// commit, one fsync per batch), as audit.BenchmarkIntentDurable measures
// for the log's own stores. Reports records/s and records per commit.
func BenchmarkAuditIntent(b *testing.B) {
	for _, callers := range []int{256, 1024} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			db := benchDB(b)
			ctx := context.Background()
			log, err := db.OpenAuditLog(ctx, sqlite.AuditOptions{Keys: benchKeys()})
			if err != nil {
				b.Fatal(err)
			}
			e := audit.Event{RequestID: "r1", TokenID: "tok_1", Source: "127.0.0.1", Venue: "binance", Method: "POST",
				Path: "/api/v3/order", Operation: "order.place", Instrument: "BTCUSDT", Side: "BUY", Quantity: "0.001", Price: "60000"}
			b.SetParallelism(max(callers/runtime.GOMAXPROCS(0), 1))
			before := db.WriterStats()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := log.Intent(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			el := time.Since(start).Seconds()
			b.StopTimer()
			st, ws := log.Stats(), db.WriterStats()
			b.ReportMetric(float64(st.Records)/el, "records/s")
			b.ReportMetric(float64(st.Records)/float64(max(ws.Batches-before.Batches, 1)), "records/commit")
		})
	}
}
