package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/mfa"
)

// auditFixture is an admin server whose actions go to a real audit log
// (JSONL file), read back after Close.
type auditFixture struct {
	*mfaFixture
	log  *audit.Log
	keys audit.Keys
	path string
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	st, err := audit.OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	keys := audit.Keys{Checkpoint: priv, Identity: id}
	l, err := audit.Open(ctx, audit.Options{Store: st, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	f := newMFAFixture(t, Options{Audit: l})
	return &auditFixture{mfaFixture: f, log: l, keys: keys, path: path}
}

// records closes the log and returns its records.
func (f *auditFixture) records(t *testing.T) []audit.Record {
	t.Helper()
	if err := f.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := audit.OpenJSONLReader(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Record
	if err := r.Scan(context.Background(), 1, func(rec audit.Record) error { out = append(out, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAdminActionsAudited: every admin request that changes something is
// one audit record naming the action, its target token (HMAC'd like the
// gateway's) and the principal; reads are not recorded; a request the
// second factor refuses is recorded as denied; the minted token is in no
// record.
func TestAdminActionsAudited(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	m, err := f.c.CreateToken(ctx, CreateTokenRequest{Name: "grid", Venues: []string{"binance"}, Scopes: []string{"order.*"}, Policy: "", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.ListTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.TokenAction(ctx, m.Info.ID, "freeze"); err != nil {
		t.Fatal(err)
	}
	f.enroll(t)
	if _, err := f.c.TokenAction(ctx, m.Info.ID, "unfreeze"); apiCode(err) != "mfa_required" {
		t.Fatalf("unfreeze without a factor: %v", err)
	}
	if _, err := f.c.TokenAction(ctx, "tok_nosuch", "revoke"); apiCode(err) != "not_found" {
		t.Fatalf("revoke unknown: %v", err)
	}
	recs := f.records(t)
	byOp := map[string][]audit.Record{}
	for _, r := range recs {
		if strings.Contains(string(r.Raw), m.Token) {
			t.Fatalf("record %d holds the minted token", r.Seq)
		}
		byOp[r.Operation] = append(byOp[r.Operation], r)
	}
	tokHash := f.keys.TokenHash(m.Info.ID)
	for _, tc := range []struct {
		name, op, decision string
		status             int
		detail             string
	}{
		{"create", "admin.token.create", audit.Allow, 200, `name "grid"; venues "binance"; scopes "order.*"`},
		{"freeze", "admin.token.freeze", audit.Allow, 200, "principal uid:"},
		{"unfreeze refused", "admin.token.unfreeze", audit.Deny, 401, "principal uid:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := byOp[tc.op]
			if len(rs) != 1 {
				t.Fatalf("%d records of %s (all: %v)", len(rs), tc.op, byOp)
			}
			r := rs[0]
			if r.Decision != tc.decision || r.Status != tc.status || r.Token != tokHash || r.Rule != tc.op || !strings.Contains(r.Error, tc.detail) || r.Source == "" {
				t.Fatalf("%+v", r)
			}
		})
	}
	if rs := byOp["admin.token.revoke"]; len(rs) != 1 || rs[0].Decision != audit.Deny || rs[0].Status != 404 {
		t.Fatalf("revoke of an unknown token: %+v", rs)
	}
	for op := range byOp {
		if strings.Contains(op, "list") || op == "admin.tokens.get" {
			t.Errorf("a read was audited as %s", op)
		}
	}
}

// TestInProcess: the in-process handler serves the same gated routes for
// a named principal and refuses a request that names none.
func TestInProcess(t *testing.T) {
	f := newAuditFixture(t)
	h := f.s.InProcess()
	do := func(ctx context.Context, method, path, body string) (int, string) {
		r := httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		b, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(b)
	}
	if st, _ := do(context.Background(), "GET", PathTokens, ""); st != http.StatusForbidden {
		t.Fatalf("no principal: %d", st)
	}
	ctx := WithPrincipal(context.Background(), mfa.Principal("console:laptop"))
	st, body := do(ctx, "POST", PathTokens, `{"name":"c","venues":["binance"],"scopes":["market.read"],"ttl_ns":3600000000000}`)
	if st != 200 || !strings.Contains(body, `"token":"kst_`) {
		t.Fatalf("create in process: %d %s", st, body)
	}
	f.enroll(t)
	if st, body := do(ctx, "POST", PathTokens, `{"name":"d","venues":["binance"],"ttl_ns":3600000000000}`); st != 401 || !strings.Contains(body, "mfa_required") {
		t.Fatalf("the gate applies in process: %d %s", st, body)
	}
	if st, body := do(ctx, "GET", PathMFA, ""); st != 200 || !strings.Contains(body, `"principal":"console:laptop"`) {
		t.Fatalf("principal: %d %s", st, body)
	}
	recs := f.records(t)
	found := false
	for _, r := range recs {
		if r.Operation == "admin.token.create" && r.Decision == audit.Allow && strings.Contains(r.Error, "principal console:laptop") {
			found = true
		}
	}
	if !found {
		t.Fatal("the in-process create is not audited with its principal")
	}
}

func TestMatchBearer(t *testing.T) {
	tok, d, err := NewAdminToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, d2, _ := NewAdminToken(nil)
	list := []BearerToken{{Name: "laptop", Digest: d}}
	for _, tc := range []struct {
		name, tok, want string
		ok              bool
	}{
		{"configured", string(tok.Reveal()), "laptop", true},
		{"other token", string(other.Reveal()), "", false},
		{"malformed", "ksa_short", "", false},
		{"kst token", "kst_live_x", "", false},
		{"empty", "", "", false},
		{"with space", " " + string(tok.Reveal()), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n, ok := MatchBearer(list, tc.tok); n != tc.want || ok != tc.ok {
				t.Fatalf("%q %v", n, ok)
			}
		})
	}
	_ = d2
}

func TestDeriveAction(t *testing.T) {
	for _, tc := range []struct{ method, pattern, want string }{
		{"POST", "POST /v1/panic", "panic.post"},
		{"POST", "POST /v1/panic/clear", "panic.clear"},
		{"DELETE", "DELETE /v1/things/{id}", "things.delete"},
		{"POST", "POST /v1/things/{id}/stop", "things.stop"},
	} {
		if got := deriveAction(tc.method, tc.pattern); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.pattern, got, tc.want)
		}
	}
}
