package cli

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
)

// auditFixture initialises a data dir and writes records through the
// app's audit log on the default SQLite sink, keyed from the vault.
func auditFixture(t *testing.T) (map[string]string, string) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "d")
	env := map[string]string{"KEYSTILE_DATA_DIR": dir, "HOME": t.TempDir()}
	if code, _, stderr := run(t, env, "", "init"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	cfg := config.Default()
	db, v, err := app.OpenVault(ctx, app.Env{Getenv: func(k string) string { return env[k] }}, dir, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := app.AuditKeys(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	keys2, _ := app.AuditKeys(ctx, v)
	if !bytes.Equal(keys.Checkpoint, keys2.Checkpoint) || !bytes.Equal(keys.Identity, keys2.Identity) || bytes.Equal(keys.Checkpoint.Seed(), keys.Identity) {
		t.Fatal("audit keys are not stable and independent")
	}
	v.Close(ctx)
	db.Close()
	l, err := app.OpenAuditLog(ctx, cfg, dir, keys, os.Stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []audit.Event{
		{RequestID: "r-alpha", TokenID: "tok_alpha", Venue: "binance", Operation: "order.place", Method: "POST", Path: "/api/v3/order",
			Instrument: "BTCUSDT", Side: "BUY", Quantity: "0.5", Price: "100", Decision: audit.Allow, Status: 200, Upstream: 200},
		{RequestID: "r-beta", TokenID: "tok_beta", Venue: "kraken", Operation: "wallet.withdraw", Method: "POST", Path: "/0/private/Withdraw",
			Decision: audit.Deny, Rule: "token.scope", Status: 403},
		{RequestID: "r-gamma", TokenID: "tok_alpha", Venue: "binance", Operation: "account.read", Method: "GET", Path: "/api/v3/account",
			Decision: audit.Error, Status: 502},
	} {
		if i == 0 {
			if err := l.Intent(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		l.Record(ctx, e)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return env, dir
}

func TestAuditCommands(t *testing.T) {
	env, dir := auditFixture(t)
	must := func(args ...string) string {
		t.Helper()
		code, out, stderr := run(t, env, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return out
	}
	out := must("audit", "verify")
	if !strings.Contains(out, "OK: 4 records, 1 checkpoints, last record 4, last checkpoint 4") {
		t.Fatalf("verify: %s", out)
	}
	pubFile := filepath.Join(t.TempDir(), "audit.pub")
	for _, format := range []string{"hex", "pem"} {
		if err := os.WriteFile(pubFile, []byte(must("audit", "public-key", "--format", format)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := must("audit", "verify", "--public-key", pubFile, "--json"); !strings.Contains(out, `"records": 4`) {
			t.Fatalf("verify --public-key (%s): %s", format, out)
		}
	}

	out = must("audit", "tail", "-n", "2")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "3 ") ||
		!strings.Contains(lines[0], "rule=token.scope") || !strings.HasPrefix(lines[1], "4 ") {
		t.Fatalf("tail -n 2:\n%s", out)
	}
	out = must("audit", "query", "--token", "tok_alpha")
	if strings.Count(out, "\n") != 3 || strings.Contains(out, "r-beta") || !strings.Contains(out, "r-gamma") {
		t.Fatalf("query --token:\n%s", out)
	}
	if strings.Contains(out, "tok_alpha") {
		t.Fatal("query output names the token id; records hold only its HMAC")
	}
	out = must("audit", "query", "--decision", "deny", "--venue", "kraken", "--since", "1h", "--json")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"request_id":"r-beta"`) {
		t.Fatalf("query --decision deny:\n%s", out)
	}
	if out := must("audit", "query", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); out != "" {
		t.Fatalf("query --since future: %s", out)
	}
	for _, bad := range [][]string{
		{"audit", "query", "--decision", "maybe"}, {"audit", "query", "--since", "yesterday"},
		{"audit", "query", "--token", "kst_live_x"}, {"audit", "export", "--format", "csv"}, {"audit", "public-key", "--format", "der"},
	} {
		if code, _, _ := run(t, env, "", bad...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, ExitUsage)
		}
	}

	// export gives a JSONL log that verifies with the same key.
	exported := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(exported, []byte(must("audit", "export", "--format", "jsonl")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "ks.yaml")
	if err := os.WriteFile(cfgFile, []byte("audit:\n  sink: jsonl\n  path: "+exported+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := must("--config", cfgFile, "audit", "verify", "--public-key", pubFile); !strings.Contains(out, "OK: 4 records") {
		t.Fatalf("verify export: %s", out)
	}

	// A changed byte in the SQLite file (the main database keeps the
	// log): exit 1 naming the record.
	db, err := sql.Open("sqlite", filepath.Join(dir, app.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_records SET data = CAST(replace(CAST(data AS TEXT), '"0.5"', '"5.0"') AS BLOB) WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, stderr := run(t, env, "", "audit", "verify")
	if code != ExitFailure || !strings.Contains(out, "FAILED at record 2") || !strings.Contains(stderr, "audit verify: record 2") {
		t.Fatalf("verify tampered: exit %d\n%s\n%s", code, out, stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditTailFollow(t *testing.T) {
	env, dir := auditFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"audit", "tail", "-n", "1", "-f", "--interval", "20ms"},
			IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(k string) string { return env[k] }})
	}()
	wait := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), s); {
			if time.Now().After(deadline) {
				t.Fatalf("tail -f never printed %q:\n%s", s, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("request=r-gamma")
	// The server appends while tail follows (same file, another handle).
	cfg := config.Default()
	ctx2 := context.Background()
	db, v, err := app.OpenVault(ctx2, app.Env{Getenv: func(k string) string { return env[k] }}, dir, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := app.AuditKeys(ctx2, v)
	v.Close(ctx2)
	db.Close()
	l, err := app.OpenAuditLog(ctx2, cfg, dir, keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Intent(ctx2, audit.Event{RequestID: "r-delta", Venue: "okx", Decision: audit.Allow}); err != nil {
		t.Fatal(err)
	}
	wait("request=r-delta")
	if err := l.Close(ctx2); err != nil {
		t.Fatal(err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f exit %d: %s", code, out.String())
	}
	if strings.Contains(out.String(), "r-alpha") {
		t.Fatalf("tail -n 1 printed older records:\n%s", out.String())
	}
}
