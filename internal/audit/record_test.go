package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.*")

func goldenKeys() Keys {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	return Keys{Checkpoint: ed25519.NewKeyFromSeed(seed), Identity: []byte("golden identity key 0123456789ab")}
}

// writeGolden writes a small fixed log (fixed keys and clock) to path.
func writeGolden(t *testing.T, path string) {
	ctx := context.Background()
	s, err := OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	now := func() time.Time { tick = tick.Add(1500 * time.Millisecond); return tick }
	l, err := Open(ctx, Options{Store: s, Keys: goldenKeys(), CheckpointEvery: 3, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	order := Event{RequestID: "r1", TokenID: "tok_alpha", Source: "127.0.0.1", Venue: "binance", Operation: "order.place",
		Method: "POST", Path: "/api/v3/order", Instrument: "BTCUSDT", Side: "BUY", OrderType: "LIMIT", Quantity: "0.01",
		Price: "65000", Notional: "650", ClientOrderID: "c-1", Decision: Allow}
	if err := l.Intent(ctx, order); err != nil {
		t.Fatal(err)
	}
	done := order
	done.Status, done.Upstream, done.VenueOrderID, done.Latency = 200, 200, "8812", 2300*time.Microsecond
	l.Record(ctx, done)
	waitRecords(t, l, 2)
	l.Record(ctx, Event{RequestID: "r2", TokenID: "tok_beta", Source: "127.0.0.1", Venue: "kraken", Operation: "wallet.withdraw",
		Method: "POST", Path: "/0/private/Withdraw", Decision: Deny, Rule: "token.scope", Status: 403,
		Error: "scope \"wallet.withdraw\" not granted\ttab\x01ctl \\ é"})
	waitRecords(t, l, 3)
	l.Record(ctx, Event{RequestID: "r3", Venue: "binance", Method: "GET", Path: "/api/v3/account", Operation: "account.read",
		Decision: Error, Status: 502, Upstream: 0, Error: "upstream: connection reset"})
	waitRecords(t, l, 4)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func waitRecords(t *testing.T, l *Log, n uint64) {
	for deadline := time.Now().Add(5 * time.Second); l.Stats().Records < n; {
		if time.Now().After(deadline) {
			t.Fatal("records not written")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGolden is the known-answer test of the canonical encoding, the
// hashes and the signatures.
func TestGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.jsonl")
	writeGolden(t, path)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub := []byte(hex.EncodeToString(goldenKeys().PublicKey()) + "\n")
	if *update {
		_ = os.WriteFile("testdata/golden.jsonl", got, 0o600)
		_ = os.WriteFile("testdata/golden.pub", pub, 0o600)
	}
	want, err := os.ReadFile("testdata/golden.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", got, want)
	}
	if wp, _ := os.ReadFile("testdata/golden.pub"); !bytes.Equal(wp, pub) {
		t.Fatal("golden public key changed")
	}
	r, _ := OpenJSONLReader("testdata/golden.jsonl")
	rep, err := Verify(context.Background(), r, goldenKeys().PublicKey())
	if err != nil || rep != (Report{Records: 4, Checkpoints: 2, LastSeq: 4, LastCheckpointSeq: 4}) {
		t.Fatalf("verify golden: %+v %v", rep, err)
	}
}

func TestScrubTokens(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"plain":                          "plain",
		"kst_":                           "kst_",
		"kst_live_":                      "kst_REDACTED",
		"a kst_live_Abc09 b":             "a kst_REDACTED b",
		"kst_test_X-kst_live_Y.":         "kst_REDACTED-kst_REDACTED.",
		"kst_other kst_kst_live_zz":      "kst_other kst_kst_REDACTED",
		"bad \xff utf8 kst_test_abc\xfe": "bad \uFFFD utf8 kst_REDACTED\uFFFD",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRecordRoundTrip: any field values encode to bytes that decode to
// the same record, verify as canonical, and carry no token text.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("r1", "binance", "/api/v3/order", "0.01", "boom", int64(5), 200)
	f.Add("", "", "", "", "\x00\x1f\"\\\u2028é\xff", int64(-1), -3)
	f.Add("kst_live_abc", "v", "/p?q", "1e9", "kst_test_Q", int64(1)<<62, 1<<30)
	f.Fuzz(func(t *testing.T, id, venue, path, qty, errText string, lat int64, status int) {
		r := Record{Seq: 42, Time: time.Unix(0, lat).UTC(), Kind: KindOutcome, RequestID: clean(id), Venue: clean(venue),
			Path: clean(path), Quantity: clean(qty), Error: clean(errText), Status: status, Latency: time.Duration(lat)}
		raw := sealRecord(&r, zeroHash)
		if !utf8.Valid(raw) || bytes.ContainsAny(raw, "\n\r") {
			t.Fatalf("not one valid line: %q", raw)
		}
		if strings.Contains(string(raw), "kst_live_") || strings.Contains(string(raw), "kst_test_") {
			t.Fatalf("token text survived: %s", raw)
		}
		got, err := checkRecord(raw)
		if err != nil {
			t.Fatalf("%v: %s", err, raw)
		}
		got.Raw, r.Raw = nil, nil
		if !got.Time.Equal(r.Time) {
			t.Fatalf("time %v != %v", got.Time, r.Time)
		}
		got.Time = r.Time
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	})
}

// FuzzVerifyJSONL: Verify never panics on an arbitrary file, and accepts
// only the untouched golden log.
func FuzzVerifyJSONL(f *testing.F) {
	golden, err := os.ReadFile("testdata/golden.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"checkpoint":1,"hash":"","time":"","sig":"zz"}` + "\n"))
	f.Add(bytes.Repeat([]byte("x"), 70000))
	pub := goldenKeys().PublicKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.jsonl")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := OpenJSONLReader(p)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(context.Background(), r, pub)
		if err == nil && rep.Records > 0 && !bytes.HasPrefix(golden, data[:bytes.LastIndexByte(data, '\n')+1]) {
			t.Fatalf("a changed log verified: %q", data)
		}
		if s, err := OpenJSONL(p); err == nil {
			_, _ = s.Head(context.Background())
			s.Close()
		}
	})
}
