package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/audit"
)

// TestDetectRecords: detect records carry their evidence, verify with the
// rest of the chain, and the evidence field is part of the hash: it can
// be neither edited, nor added to an outcome record, nor removed from a
// detect record.
func TestDetectRecords(t *testing.T) {
	const evidence = `{"detector":"order_size","observed":600,"baseline":60,"requests":["req-000001"]}`
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			path := b.file(t)
			ctx := context.Background()
			l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), CheckpointEvery: 100})
			if err != nil {
				t.Fatal(err)
			}
			l.Record(ctx, event(1))
			l.Detect(ctx, audit.Event{RequestID: "fnd_1", TokenID: "tok_abc123", Source: "10.0.0.9", Venue: "binance",
				Operation: "detect.freeze", Decision: "critical", Rule: "detect.order_size",
				Evidence: evidence + ` kst_live_` + strings.Repeat("A", 40)})
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := verify(t, b, path); err != nil {
				t.Fatal(err)
			}
			recs := b.records(t, path)
			out, det := recs[1], recs[2]
			if bytes.Contains(out, []byte(`"evidence"`)) {
				t.Fatalf("outcome record has an evidence field: %s", out)
			}
			r, err := audit.DecodeRecord(det)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != audit.KindDetect || !strings.HasPrefix(r.Evidence, evidence) || !strings.HasSuffix(r.Evidence, "kst_REDACTED") {
				t.Fatalf("detect record: kind %q evidence %q", r.Kind, r.Evidence)
			}
			if bytes.Contains(det, []byte("10.0.0.9")) || bytes.Contains(det, []byte("tok_abc123")) {
				t.Fatalf("detect record names the source or token in clear: %s", det)
			}
			for _, tc := range []struct {
				name string
				seq  uint64
				edit func([]byte) []byte
			}{
				{"edit evidence", 2, func(b []byte) []byte { return bytes.Replace(b, []byte(`observed\":600`), []byte(`observed\":601`), 1) }},
				{"drop evidence", 2, func(b []byte) []byte {
					i := bytes.Index(b, []byte(`,"evidence":`))
					j := bytes.Index(b, []byte(`,"prev":`))
					return append(bytes.Clone(b[:i]), b[j:]...)
				}},
				{"evidence on an outcome", 1, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`,"prev":`), []byte(`,"evidence":"","prev":`), 1)
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					p := b.file(t)
					writeCopy(t, path, p)
					b.setRecord(t, p, tc.seq, tc.edit(b.records(t, p)[tc.seq]))
					_, err := verify(t, b, p)
					var ve *audit.VerifyError
					if !errors.As(err, &ve) || ve.Seq != tc.seq {
						t.Fatalf("verify: %v, want a failure at record %d", err, tc.seq)
					}
				})
			}
		})
	}
}

// writeCopy copies the store file src to dst.
func writeCopy(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src) // #nosec G304 -- test temp file
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMixedKinds: one log holding every kind — outcome, intent, action
// (actor, reason, detail) and detect (evidence, and a detect record that
// also names an actor) — verifies, and each kind's extra fields are
// bound to its kind and its place: evidence on an action record, actor
// fields added to a detect record, or evidence moved before detail all
// fail verification at that record.
func TestMixedKinds(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			path := b.file(t)
			ctx := context.Background()
			l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), CheckpointEvery: 3})
			if err != nil {
				t.Fatal(err)
			}
			l.Record(ctx, event(1))
			if err := l.Intent(ctx, event(2)); err != nil {
				t.Fatal(err)
			}
			if err := l.Action(ctx, audit.Event{RequestID: "p-1", Operation: "killswitch.engage", Decision: audit.Allow, Rule: "killswitch.panic",
				Actor: "admin uid=1000", Reason: "bot compromised", Detail: `{"scope":"all","trip":1}`}); err != nil {
				t.Fatal(err)
			}
			l.Detect(ctx, audit.Event{RequestID: "fnd_1", TokenID: "tok_abc123", Operation: "detect.kill", Decision: "critical",
				Rule: "detect.order_size", Evidence: `{"action":"kill","result":"done"}`})
			l.Detect(ctx, audit.Event{RequestID: "fnd_2", Operation: "detect.alert", Decision: "warning", Rule: "detect.admin_hours",
				Actor: "detect", Detail: `{"x":1}`, Evidence: `{"action":"alert"}`})
			l.Record(ctx, event(3))
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := verify(t, b, path)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records != 6 {
				t.Fatalf("verified %d records, want 6", rep.Records)
			}
			recs := b.records(t, path)
			kinds := []string{}
			for seq := uint64(1); seq <= 6; seq++ {
				r, err := audit.DecodeRecord(recs[seq])
				if err != nil {
					t.Fatal(err)
				}
				kinds = append(kinds, r.Kind)
			}
			if strings.Join(kinds, ",") != "outcome,intent,action,detect,detect,outcome" {
				t.Fatalf("kinds %v", kinds)
			}
			if d := recs[5]; !bytes.Contains(d, []byte(`"detail":"{\"x\":1}","evidence":`)) {
				t.Fatalf("a detect record with detail: %s", d)
			}
			for _, tc := range []struct {
				name string
				seq  uint64
				edit func([]byte) []byte
			}{
				{"evidence on an action", 3, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`,"prev":`), []byte(`,"evidence":"{}","prev":`), 1)
				}},
				{"actor added to a detect record", 4, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`,"evidence":`), []byte(`,"actor":"admin uid=0","evidence":`), 1)
				}},
				{"evidence before detail", 5, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`"detail":"{\"x\":1}","evidence":"{\"action\":\"alert\"}"`),
						[]byte(`"evidence":"{\"action\":\"alert\"}","detail":"{\"x\":1}"`), 1)
				}},
				{"kind action renamed detect", 3, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`"kind":"action"`), []byte(`"kind":"detect"`), 1)
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					p := b.file(t)
					writeCopy(t, path, p)
					edited := tc.edit(b.records(t, p)[tc.seq])
					if bytes.Equal(edited, b.records(t, p)[tc.seq]) {
						t.Fatal("the edit changed nothing")
					}
					b.setRecord(t, p, tc.seq, edited)
					_, err := verify(t, b, p)
					var ve *audit.VerifyError
					if !errors.As(err, &ve) || ve.Seq != tc.seq {
						t.Fatalf("verify: %v, want a failure at record %d", err, tc.seq)
					}
				})
			}
		})
	}
}
