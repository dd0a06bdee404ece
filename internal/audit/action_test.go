package audit_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/audit"
)

// TestActionRecords: an action record is durable when Action returns,
// carries actor, reason and detail, and verifies in a chain mixed with
// request records; request records keep their encoding (no optional
// fields), and a changed actor or reason breaks the chain.
func TestActionRecords(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "audit."+b.name)
			l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), CheckpointEvery: 2})
			if err != nil {
				t.Fatal(err)
			}
			l.Record(ctx, audit.Event{RequestID: "req-1", TokenID: "tok_a", Venue: "binance", Method: "GET", Path: "/api/v3/account", Decision: audit.Allow, Status: 200})
			act := audit.Event{RequestID: "act-1", TokenID: "tok_a", Operation: "killswitch.engage", Decision: audit.Allow,
				Rule: "killswitch.panic", Actor: "admin uid=1000", Reason: "bot went \"rogue\"\n kst_live_AAAAbbbbCCCC",
				Detail: `{"scope":"all","trip":1}`}
			if err := l.Action(ctx, act); err != nil {
				t.Fatalf("action: %v", err)
			}
			// Durable on return: the record is readable now, before Close.
			r := b.reader(t, path)
			var got []audit.Record
			if err := r.Scan(ctx, 1, func(rec audit.Record) error { got = append(got, rec); return nil }); err != nil {
				t.Fatal(err)
			}
			_ = r.Close()
			if len(got) != 2 {
				t.Fatalf("records after Action = %d, want 2", len(got))
			}
			a := got[1]
			if a.Kind != audit.KindAction || a.Actor != act.Actor || a.Detail != act.Detail || a.Rule != "killswitch.panic" {
				t.Fatalf("action record = %+v", a)
			}
			if strings.Contains(a.Reason, "kst_live_") || !strings.Contains(a.Reason, "kst_REDACTED") {
				t.Errorf("a token in the reason was not scrubbed: %q", a.Reason)
			}
			if bytes.Contains(got[0].Raw, []byte(`"actor"`)) || bytes.Contains(got[0].Raw, []byte(`"reason"`)) {
				t.Errorf("request record carries action fields: %s", got[0].Raw)
			}
			if !bytes.Contains(a.Raw, []byte(`"error":"","actor":"admin uid=1000","reason":`)) {
				t.Errorf("action fields not in canonical order: %s", a.Raw)
			}
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			rd := b.reader(t, path)
			rep, err := audit.Verify(ctx, rd, testKeys().PublicKey())
			_ = rd.Close()
			if err != nil || rep.Records != 2 {
				t.Fatalf("verify: %+v %v", rep, err)
			}

			// Tamper with the reason: the chain names record 2.
			raw := b.records(t, path)[2]
			b.setRecord(t, path, 2, bytes.Replace(raw, []byte(`rogue`), []byte(`roguE`), 1))
			rd = b.reader(t, path)
			_, err = audit.Verify(ctx, rd, testKeys().PublicKey())
			_ = rd.Close()
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || ve.Seq != 2 {
				t.Fatalf("tampered reason: %v", err)
			}
		})
	}
}

// TestActionAfterClose refuses with ErrClosed.
func TestActionAfterClose(t *testing.T) {
	ctx := context.Background()
	b := jsonlBackend()
	l, err := audit.Open(ctx, audit.Options{Store: b.open(t, filepath.Join(t.TempDir(), "a.jsonl")), Keys: testKeys()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Action(ctx, audit.Event{Operation: "killswitch.engage"}); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Action after Close = %v", err)
	}
}
