package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// testKeys are fixed keys (the app derives real ones from the vault).
func testKeys() audit.Keys {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	return audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(seed), Identity: []byte("identity-key-for-tests-0123456789")}
}

// backend is one store implementation under test, with the means to
// tamper with its real file.
type backend struct {
	name string
	// open opens the store for writing at path.
	open func(t testing.TB, path string) audit.Store
	// reader opens it read-only.
	reader func(t testing.TB, path string) interface {
		audit.Reader
		Close() error
	}
	// records returns the stored bytes of every record, by seq.
	records func(t testing.TB, path string) map[uint64][]byte
	// setRecord replaces (data != nil) or deletes (nil) record seq.
	setRecord func(t testing.TB, path string, seq uint64, data []byte)
	// swap exchanges the stored places of records a and b.
	swap func(t testing.TB, path string, a, b uint64)
	// setCheckpoint replaces the checkpoint for seq.
	setCheckpoint func(t testing.TB, path string, seq uint64, data []byte)
	// checkpoint returns the stored checkpoint for seq.
	checkpoint func(t testing.TB, path string, seq uint64) []byte
}

func backends() []backend {
	return []backend{sqliteBackend(), jsonlBackend()}
}

func sqliteBackend() backend {
	db := func(t testing.TB, path string) *sql.DB {
		d, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return backend{
		name: "sqlite",
		open: func(t testing.TB, path string) audit.Store {
			s, err := audit.OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		reader: func(t testing.TB, path string) interface {
			audit.Reader
			Close() error
		} {
			s, err := audit.OpenSQLiteReader(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		records: func(t testing.TB, path string) map[uint64][]byte {
			d := db(t, path)
			defer d.Close()
			rows, err := d.Query(`SELECT seq, data FROM audit_records`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			out := map[uint64][]byte{}
			for rows.Next() {
				var s uint64
				var d []byte
				if err := rows.Scan(&s, &d); err != nil {
					t.Fatal(err)
				}
				out[s] = d
			}
			return out
		},
		setRecord: func(t testing.TB, path string, seq uint64, data []byte) {
			var err error
			d := db(t, path)
			defer d.Close()
			if data == nil {
				_, err = d.Exec(`DELETE FROM audit_records WHERE seq = ?`, seq)
			} else {
				_, err = d.Exec(`UPDATE audit_records SET data = ? WHERE seq = ?`, data, seq)
			}
			if err != nil {
				t.Fatal(err)
			}
		},
		swap: func(t testing.TB, path string, a, b uint64) {
			d := db(t, path)
			defer d.Close()
			if _, err := d.Exec(`UPDATE audit_records SET data = CASE seq WHEN ?1 THEN (SELECT data FROM audit_records WHERE seq = ?2)
				ELSE (SELECT data FROM audit_records WHERE seq = ?1) END WHERE seq IN (?1, ?2)`, a, b); err != nil {
				t.Fatal(err)
			}
		},
		setCheckpoint: func(t testing.TB, path string, seq uint64, data []byte) {
			d := db(t, path)
			defer d.Close()
			res, err := d.Exec(`UPDATE audit_checkpoints SET data = ? WHERE seq = ?`, data, seq)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("no checkpoint %d", seq)
			}
		},
		checkpoint: func(t testing.TB, path string, seq uint64) []byte {
			var data []byte
			d := db(t, path)
			defer d.Close()
			if err := d.QueryRow(`SELECT data FROM audit_checkpoints WHERE seq = ?`, seq).Scan(&data); err != nil {
				t.Fatal(err)
			}
			return data
		},
	}
}

func jsonlLines(t testing.TB, path string) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func lineIndex(t testing.TB, lines [][]byte, prefix string) int {
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte(prefix)) {
			return i
		}
	}
	t.Fatalf("no line starts with %s", prefix)
	return -1
}

func jsonlBackend() backend {
	recPrefix := func(seq uint64) string { return `{"seq":` + strconv.FormatUint(seq, 10) + `,` }
	cpPrefix := func(seq uint64) string { return `{"checkpoint":` + strconv.FormatUint(seq, 10) + `,` }
	return backend{
		name: "jsonl",
		open: func(t testing.TB, path string) audit.Store {
			s, err := audit.OpenJSONL(path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		reader: func(t testing.TB, path string) interface {
			audit.Reader
			Close() error
		} {
			s, err := audit.OpenJSONLReader(path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		records: func(t testing.TB, path string) map[uint64][]byte {
			out := map[uint64][]byte{}
			for _, l := range jsonlLines(t, path) {
				if bytes.HasPrefix(l, []byte(`{"seq":`)) {
					r, err := audit.DecodeRecord(bytes.TrimSuffix(l, []byte("\n")))
					if err != nil {
						t.Fatal(err)
					}
					out[r.Seq] = r.Raw
				}
			}
			return out
		},
		setRecord: func(t testing.TB, path string, seq uint64, data []byte) {
			lines := jsonlLines(t, path)
			i := lineIndex(t, lines, recPrefix(seq))
			if data == nil {
				lines = append(lines[:i], lines[i+1:]...)
			} else {
				lines[i] = append(bytes.Clone(data), '\n')
			}
			writeLines(t, path, lines)
		},
		swap: func(t testing.TB, path string, a, b uint64) {
			lines := jsonlLines(t, path)
			i, j := lineIndex(t, lines, recPrefix(a)), lineIndex(t, lines, recPrefix(b))
			lines[i], lines[j] = lines[j], lines[i]
			writeLines(t, path, lines)
		},
		setCheckpoint: func(t testing.TB, path string, seq uint64, data []byte) {
			lines := jsonlLines(t, path)
			lines[lineIndex(t, lines, cpPrefix(seq))] = append(bytes.Clone(data), '\n')
			writeLines(t, path, lines)
		},
		checkpoint: func(t testing.TB, path string, seq uint64) []byte {
			lines := jsonlLines(t, path)
			return bytes.TrimSuffix(lines[lineIndex(t, lines, cpPrefix(seq))], []byte("\n"))
		},
	}
}

func (b backend) file(t testing.TB) string {
	return filepath.Join(t.TempDir(), "audit."+b.name)
}

// event is a write-operation event numbered i.
func event(i int) audit.Event {
	return audit.Event{
		RequestID: fmt.Sprintf("req-%06d", i), TokenID: "tok_abc123", Source: "127.0.0.1",
		Venue: "binance", Operation: "order.place", Method: "POST", Path: "/api/v3/order",
		Instrument: "BTCUSDT", Side: "BUY", OrderType: "LIMIT", Quantity: "0.010", Price: "65000.5",
		Notional: "650.005", ClientOrderID: fmt.Sprintf("cid-%d", i), Decision: audit.Allow,
		Status: 200, Upstream: 200, Latency: 1500 * time.Microsecond,
	}
}

// writeLog writes n intents (each followed by its outcome record when
// outcomes is set) through a Log on store and closes it.
func writeLog(t testing.TB, store audit.Store, every, n int) {
	t.Helper()
	ctx := context.Background()
	l, err := audit.Open(ctx, audit.Options{Store: store, Keys: testKeys(), CheckpointEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Intent(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func verify(t testing.TB, b backend, path string) (audit.Report, error) {
	t.Helper()
	r := b.reader(t, path)
	defer r.Close()
	return audit.Verify(context.Background(), r, testKeys().PublicKey())
}
