package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

func TestWriteAndVerify(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			path := b.file(t)
			writeLog(t, b.open(t, path), 10, 25)
			rep, err := verify(t, b, path)
			if err != nil {
				t.Fatal(err)
			}
			want := audit.Report{Records: 25, Checkpoints: 3, LastSeq: 25, LastCheckpointSeq: 25}
			if rep != want {
				t.Fatalf("report %+v, want %+v", rep, want)
			}
		})
	}
}

func TestResumeAcrossCloseOpen(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			path := b.file(t)
			writeLog(t, b.open(t, path), 10, 15) // checkpoints 10, 15 (close)
			writeLog(t, b.open(t, path), 10, 15) // 20, 30 (periodic; close adds none)
			writeLog(t, b.open(t, path), 10, 0)  // nothing new: no checkpoint
			rep, err := verify(t, b, path)
			if err != nil {
				t.Fatal(err)
			}
			want := audit.Report{Records: 30, Checkpoints: 4, LastSeq: 30, LastCheckpointSeq: 30}
			if rep != want {
				t.Fatalf("report %+v, want %+v", rep, want)
			}
			recs := b.records(t, path)
			r16, _ := audit.DecodeRecord(recs[16])
			r15, _ := audit.DecodeRecord(recs[15])
			if r16.Prev != r15.Hash {
				t.Fatal("the chain did not resume from the stored head")
			}
		})
	}
}

// TestVerifyDetectsTampering edits the real files and checks that Verify
// names the first bad record.
func TestVerifyDetectsTampering(t *testing.T) {
	const n, every = 25, 10 // checkpoints at 10, 20 and 25
	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			golden := b.file(t)
			writeLog(t, b.open(t, golden), every, n)
			orig, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			fresh := func(t *testing.T) string {
				p := b.file(t)
				if err := os.WriteFile(p, orig, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			cases := []struct {
				name    string
				tamper  func(t *testing.T, path string)
				wantSeq uint64
				reason  string
			}{
				{"edit venue", func(t *testing.T, p string) {
					r := b.records(t, p)[7]
					b.setRecord(t, p, 7, bytes.Replace(r, []byte(`"binance"`), []byte(`"binancf"`), 1))
				}, 7, "hash does not match"},
				{"edit quantity and fix nothing else", func(t *testing.T, p string) {
					r := b.records(t, p)[12]
					b.setRecord(t, p, 12, bytes.Replace(r, []byte(`"0.010"`), []byte(`"9.010"`), 1))
				}, 12, "hash does not match"},
				{"delete", func(t *testing.T, p string) { b.setRecord(t, p, 7, nil) }, 7, "expected record 7 here, found record 8"},
				{"swap", func(t *testing.T, p string) { b.swap(t, p, 7, 8) }, 7, "found record 8"},
				{"truncate tail past checkpoint", func(t *testing.T, p string) {
					for s := uint64(18); s <= n; s++ {
						b.setRecord(t, p, s, nil)
					}
				}, 18, "log truncated"},
				{"forged checkpoint signature", func(t *testing.T, p string) {
					c, err := audit.DecodeCheckpoint(b.checkpoint(t, p, 20))
					if err != nil {
						t.Fatal(err)
					}
					c.Hash = strings.Repeat("ab", 32)
					c.Sig = ed25519.Sign(otherKey, []byte("whatever"))
					c.Raw = nil
					raw, _ := c.MarshalJSON()
					b.setCheckpoint(t, p, 20, raw)
				}, 20, "signature does not verify"},
				{"rewritten chain tail, checkpoint kept", func(t *testing.T, p string) {
					// Rewrite record 25 consistently (new hash) with the
					// real log: its signed checkpoint no longer matches.
					st := b.open(t, p)
					st.Close()
					r := b.records(t, p)[25]
					b.setRecord(t, p, 25, bytes.Replace(r, []byte(`"BUY"`), []byte(`"SEL"`), 1))
				}, 25, "hash does not match"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					p := fresh(t)
					if _, err := verify(t, b, p); err != nil {
						t.Fatalf("untouched copy: %v", err)
					}
					tc.tamper(t, p)
					_, err := verify(t, b, p)
					var ve *audit.VerifyError
					if !errors.As(err, &ve) {
						t.Fatalf("verify: %v, want a VerifyError", err)
					}
					if ve.Seq != tc.wantSeq || !strings.Contains(ve.Reason, tc.reason) {
						t.Fatalf("verify: %v; want record %d, reason containing %q", ve, tc.wantSeq, tc.reason)
					}
				})
			}
			// Every single-byte change of a record is caught at that record
			// (every 4th byte for SQLite, whose files are slower to copy).
			t.Run("every byte", func(t *testing.T) {
				r := b.records(t, golden)[5]
				stride := 1
				if b.name == "sqlite" {
					stride = 4
				}
				for i := 0; i < len(r); i += stride {
					p := fresh(t)
					bad := bytes.Clone(r)
					bad[i] ^= 0x01
					if bad[i] == '\n' {
						bad[i] = 'x'
					}
					b.setRecord(t, p, 5, bad)
					_, err := verify(t, b, p)
					var ve *audit.VerifyError
					if !errors.As(err, &ve) || ve.Seq != 5 {
						t.Fatalf("byte %d (%q→%q): verify %v, want record 5", i, r[i], bad[i], err)
					}
				}
			})
		})
	}
}

func TestVerifyWrongKey(t *testing.T) {
	b := jsonlBackend()
	p := b.file(t)
	writeLog(t, b.open(t, p), 10, 12)
	r := b.reader(t, p)
	defer r.Close()
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)).Public().(ed25519.PublicKey)
	_, err := audit.Verify(context.Background(), r, other)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Seq != 10 {
		t.Fatalf("verify with another key: %v, want record 10", err)
	}
}

// TestConcurrentGroupCommit: many callers, one chain, batches of more
// than one record.
func TestConcurrentGroupCommit(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			path := b.file(t)
			l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), CheckpointEvery: 100, MaxBatch: 64})
			if err != nil {
				t.Fatal(err)
			}
			const workers, each = 16, 60
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						e := event(w*each + i)
						if err := l.Intent(ctx, e); err != nil {
							t.Error(err)
							return
						}
						l.Record(ctx, e)
					}
				})
			}
			wg.Wait()
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			st := l.Stats()
			if st.Records != 2*workers*each || st.Dropped != 0 {
				t.Fatalf("stats %+v", st)
			}
			if st.MaxBatch < 2 || st.MaxBatch > 64 || st.Batches >= st.Records {
				t.Fatalf("no group commit: %+v", st)
			}
			rep, err := verify(t, b, path)
			if err != nil || rep.Records != 2*workers*each {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			if err := l.Intent(ctx, event(0)); !errors.Is(err, audit.ErrClosed) {
				t.Fatalf("intent after close: %v", err)
			}
		})
	}
}

// TestTokenOnlyAsHMAC is the canary: a token value passed as TokenID, and
// one leaked into error text, never reach the stored bytes.
func TestTokenOnlyAsHMAC(t *testing.T) {
	const tok = "kst_live_" + "Zx9CanaryCanaryCanaryCanaryCanaryCanary01234" + "aB3dE5"
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			path := b.file(t)
			var mirror bytes.Buffer
			l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), Mirrors: []audit.Mirror{audit.NewWriterMirror(&mirror)}})
			if err != nil {
				t.Fatal(err)
			}
			e := event(1)
			e.TokenID, e.Source = tok, "203.0.113.9"
			e.Error = "upstream echoed " + tok + " back"
			if err := l.Intent(ctx, e); err != nil {
				t.Fatal(err)
			}
			l.Record(ctx, e)
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			file, _ := os.ReadFile(path)
			for name, blob := range map[string][]byte{"store": file, "mirror": mirror.Bytes()} {
				for _, needle := range []string{tok, "Zx9Canary", "203.0.113.9"} {
					if bytes.Contains(blob, []byte(needle)) {
						t.Errorf("%s contains %q", name, needle)
					}
				}
				if !bytes.Contains(blob, []byte(`"token":"`+l.TokenHash(tok)+`"`)) {
					t.Errorf("%s lacks the token's HMAC", name)
				}
				if !bytes.Contains(blob, []byte("upstream echoed kst_REDACTED back")) {
					t.Errorf("%s: token in error text not redacted", name)
				}
			}
			if h := l.TokenHash(tok); len(h) != 64 || h == testKeys().TokenHash("other") || h != testKeys().TokenHash(tok) {
				t.Fatalf("TokenHash %q", h)
			}
		})
	}
}

// TestDevFull: a store that cannot write fails Intent promptly and
// Healthy reports it.
func TestDevFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	ctx := context.Background()
	s, err := audit.OpenJSONL("/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, audit.Options{Store: s, Keys: testKeys()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = l.Intent(ctx, event(1))
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("intent on /dev/full: %v after %v", err, time.Since(start))
	}
	if h := l.Healthy(); h == nil || !strings.Contains(h.Error(), "no space") {
		t.Fatalf("Healthy: %v", h)
	}
	l.Record(ctx, event(1))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Failures != 2 || st.Dropped != 1 || st.Records != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRecoversAfterStoreFailure: another connection holds the SQLite
// write lock; intents fail (fail closed), Healthy reports it; once the
// lock is gone the log resumes and the chain verifies.
func TestRecoversAfterStoreFailure(t *testing.T) {
	ctx := context.Background()
	b := sqliteBackend()
	path := b.file(t)
	l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), CheckpointEvery: 5, IntentTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.Intent(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	other, err := audit.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Intent(ctx, event(3)); err == nil || time.Since(start) > time.Second {
		t.Fatalf("intent while locked: %v after %v", err, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Healthy() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h := l.Healthy(); h == nil || !strings.Contains(h.Error(), "audit: write") {
		t.Fatalf("Healthy while locked: %v", h)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	for i := 4; i < 12; i++ {
		if err := l.Intent(ctx, event(i)); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if h := l.Healthy(); h != nil {
		t.Fatalf("Healthy after recovery: %v", h)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := verify(t, b, path)
	if err != nil || rep.Records != 11 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestIntentCancelledIsNotWritten(t *testing.T) {
	ctx := context.Background()
	b := jsonlBackend()
	path := b.file(t)
	l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys()})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Intent(cctx, event(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled intent: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(b.records(t, path)); n != 0 {
		t.Fatalf("%d records written for a refused intent", n)
	}
}

func TestOpenRefusesCorruptHead(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			p := b.file(t)
			writeLog(t, b.open(t, p), 10, 3)
			r := b.records(t, p)[3]
			b.setRecord(t, p, 3, bytes.Replace(r, []byte("binance"), []byte("kraken!"), 1))
			_, err := audit.Open(context.Background(), audit.Options{Store: b.open(t, p), Keys: testKeys()})
			if err == nil || !strings.Contains(err.Error(), "last record") {
				t.Fatalf("open on a corrupt head: %v", err)
			}
		})
	}
}

func TestOpenValidatesOptions(t *testing.T) {
	s := jsonlBackend().open(t, jsonlBackend().file(t))
	defer s.Close()
	k := testKeys()
	for name, o := range map[string]audit.Options{
		"no store":     {Keys: k},
		"no key":       {Store: s, Keys: audit.Keys{Identity: k.Identity}},
		"no identity":  {Store: s, Keys: audit.Keys{Checkpoint: k.Checkpoint}},
		"negative max": {Store: s, Keys: k, MaxBatch: -1},
	} {
		if _, err := audit.Open(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestJSONLCutsTornLine(t *testing.T) {
	b := jsonlBackend()
	p := b.file(t)
	writeLog(t, b.open(t, p), 10, 4)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":5,"time":"2026-`) // a write cut short by a crash
	f.Close()
	if rep, err := verify(t, b, p); err != nil || rep.Records != 4 {
		t.Fatalf("verify with torn tail: %+v %v", rep, err)
	}
	writeLog(t, b.open(t, p), 10, 2)
	rep, err := verify(t, b, p)
	if err != nil || rep.Records != 6 {
		t.Fatalf("verify after resume: %+v %v", rep, err)
	}
}

func TestSinkDropsWhenClosed(t *testing.T) {
	ctx := context.Background()
	b := jsonlBackend()
	l, err := audit.Open(ctx, audit.Options{Store: b.open(t, b.file(t)), Keys: testKeys()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var s audit.Sink = l
	s.Record(ctx, event(1))
	if st := l.Stats(); st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := l.Close(ctx); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}
