package postgres_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
)

// cutProxy forwards TCP connections to a PostgreSQL server. cut breaks
// every connection open through it, and it never forwards a cancel
// request: a client whose connection breaks mid-COMMIT then cannot stop
// the server, which commits without the client hearing of it.
type cutProxy struct {
	ln       net.Listener
	upstream string
	down     atomic.Bool // new connections are closed at once (the server is "down")
	mu       sync.Mutex
	conns    []net.Conn
}

func newCutProxy(t *testing.T, upstream string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, upstream: upstream}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

// openThroughProxy opens dsn's database through a new cutProxy.
func openThroughProxy(t *testing.T, dsn string) (*cutProxy, *postgres.DB) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	return proxy, openDSN(t, u.String())
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	if p.down.Load() {
		_ = c.Close()
		return
	}
	var head [8]byte
	if _, err := io.ReadFull(c, head[:]); err != nil || binary.BigEndian.Uint32(head[4:]) == 80877102 { // CancelRequest
		_ = c.Close()
		return
	}
	u, err := net.Dial("tcp", p.upstream)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, u)
	p.mu.Unlock()
	if _, err := u.Write(head[:]); err != nil {
		_ = c.Close()
		_ = u.Close()
		return
	}
	go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
	_, _ = io.Copy(c, u)
	_ = c.Close()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// TestLedgerLostCommitAnswer: the connection breaks while COMMIT is in
// flight (a deferred trigger makes it take a second) and the server
// commits without the client hearing of it, or refuses the commit after
// the break. Open learns the outcome from the server before it returns:
// success when the commit went through, an error when it did not; the
// store and the intent log agree.
func TestLedgerLostCommitAnswer(t *testing.T) {
	ctx := context.Background()
	dsn := testDSN(t)
	direct := openDSN(t, dsn)
	if _, err := postgres.UseTestIntents(ctx, direct); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Pool().Exec(ctx, `CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF NEW.request_id LIKE 'slow%' THEN PERFORM pg_sleep(1); END IF;
				IF NEW.request_id LIKE 'slowfail%' THEN RAISE EXCEPTION 'refused at commit'; END IF;
				RETURN NULL;
			END $$;
		CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON test_intents DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION slow_commit()`); err != nil {
		t.Fatal(err)
	}
	proxy, db := openThroughProxy(t, dsn)
	ti, err := postgres.UseTestIntents(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		requestID string
		committed bool
	}{{"slow-ok", true}, {"slowfail", false}} {
		w := storetest.LedgerWrite(i, "1000")
		w.Intent.RequestID = tc.requestID
		done := make(chan error, 1)
		go func() { done <- db.Ledger().Open(ctx, w) }()
		waitForCommitInFlight(t, direct)
		proxy.cut()
		err := <-done
		if (err == nil) != tc.committed {
			t.Fatalf("%s: Open = %v, want committed %v", tc.requestID, err, tc.committed)
		}
		_, gerr := direct.Idempotency().Get(ctx, "tok_1/binance", w.Key.Record.Key)
		if (gerr == nil) != tc.committed || storedIntents(t, direct)[tc.requestID] != tc.committed {
			t.Fatalf("%s: claim %v, intents %v; want stored = %v", tc.requestID, gerr, storedIntents(t, direct), tc.committed)
		}
		if gerr != nil && !errors.Is(gerr, store.ErrNotFound) {
			t.Fatal(gerr)
		}
		if tc.committed && len(w.Budget.IDs) != 1 || !tc.committed && w.Budget.IDs != nil {
			t.Fatalf("%s: ids %v", tc.requestID, w.Budget.IDs)
		}
	}
	if ti.Committed() != 1 || ti.RolledBack() != 1 {
		t.Fatalf("after calls: %d committed, %d rolled back", ti.Committed(), ti.RolledBack())
	}
	checkTotals(t, direct)
}

// waitForCommitInFlight waits until a backend runs a COMMIT sleeping in
// the slow_commit trigger.
func waitForCommitInFlight(t *testing.T, db *postgres.DB) {
	t.Helper()
	for range 500 {
		var n int
		err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE query = 'commit' AND wait_event = 'PgSleep'`).Scan(&n)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no COMMIT in flight")
}
