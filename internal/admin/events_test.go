package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// events records audit events.
type events struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (e *events) Record(_ context.Context, ev audit.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) all() []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]audit.Event(nil), e.evs...)
}

// TestAdminWritesAreAudited: every admin write, refused ones included
// (by the handler, by the MFA gate's route table, by the mux), becomes one
// audit event named from its route, without the values it carried; reads
// are not audited. With Options.Audit as well (as the server runs), a
// write that reaches its route is recorded once, by audit.go.
func TestAdminWritesAreAudited(t *testing.T) {
	t.Run("events only", func(t *testing.T) { testAdminWritesAudited(t, false) })
	t.Run("events and audit", func(t *testing.T) { testAdminWritesAudited(t, true) })
}

func testAdminWritesAudited(t *testing.T, both bool) {
	ev := &events{}
	o := Options{Events: ev}
	if both {
		o.Audit = ev
	}
	o.Extra = func(mux *http.ServeMux) {
		mux.HandleFunc("POST /v1/stream", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("{\"a\":1}\n"))
			w.(http.Flusher).Flush()
		})
	}
	_, c := start(t, o)
	ctx := context.Background()
	const canary = "CANARY-admin-audit-77"
	if _, err := c.SetSecret(ctx, "binance-main", SetSecretRequest{Fields: map[string][]byte{"secret": []byte(canary)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSecrets(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPost, PathSecrets+"/binance-main/revoke", json.RawMessage(`{"bogus":1}`), nil); err == nil {
		t.Fatal("malformed revoke accepted")
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/stream", struct{}{}, nil); apiCode(err) != "unclassified_route" {
		t.Fatalf("a route missing from MFARoutes: %v", err)
	}
	if err := c.Do(ctx, http.MethodDelete, "/v1/nothing/here", nil, nil); err == nil {
		t.Fatal("unknown route answered")
	}
	got := ev.all()
	want := []struct {
		op, decision string
		status       int
	}{
		{"admin.secrets.set", audit.Allow, 200},
		{"admin.secrets.revoke", audit.Deny, 400},
		{"admin.stream.create", audit.Error, 500},
		{"admin.unknown", audit.Deny, 404},
	}
	if both { // the classified routes are recorded by audit.go, named by their action
		want[0].op, want[1].op = "admin.secret.set", "admin.secret.revoke"
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	uid := "uid:" + strconv.Itoa(os.Getuid())
	for i, w := range want {
		e := got[i]
		if both && i < 2 {
			// audit.go's records carry the principal HMAC'd by the log,
			// as the source here.
			if e.Operation != w.op || e.Decision != w.decision || e.Status != w.status {
				t.Errorf("event %d: %+v, want %s %s %d", i, e, w.op, w.decision, w.status)
			}
			continue
		}
		if e.Operation != w.op || e.Decision != w.decision || e.Status != w.status || e.Source != uid || e.Venue != "" ||
			!strings.HasPrefix(e.RequestID, "adm_") || e.Time.IsZero() || e.Time.After(time.Now()) {
			t.Errorf("event %d: %+v, want %s %s %d", i, e, w.op, w.decision, w.status)
		}
		if b, _ := json.Marshal(e); strings.Contains(string(b), canary) {
			t.Errorf("event %d carries the secret value: %s", i, b)
		}
	}
	if got[0].Path != "/v1/secrets/binance-main" || got[0].Method != http.MethodPut {
		t.Errorf("event 0: %+v", got[0])
	}
	for i, e := range got {
		if b, _ := json.Marshal(e); strings.Contains(string(b), canary) {
			t.Errorf("event %d carries the secret value: %s", i, b)
		}
	}
}

// TestAdminOperation names operations from route patterns.
func TestAdminOperation(t *testing.T) {
	for _, tc := range []struct{ method, pattern, want string }{
		{"PUT", "PUT /v1/secrets/{name}", "admin.secrets.set"},
		{"POST", "POST /v1/secrets/{name}/revoke", "admin.secrets.revoke"},
		{"DELETE", "DELETE /v1/secrets/{name}", "admin.secrets.delete"},
		{"POST", "POST /v1/vault/rekey", "admin.vault.rekey"},
		{"POST", "POST /v1/tokens", "admin.tokens.create"},
		{"POST", "POST /v1/tokens/{id}/unfreeze", "admin.tokens.unfreeze"},
		{"POST", "POST /v1/oauth/{venue}/login", "admin.oauth.login"},
		{"DELETE", "DELETE /v1/detect/holds/{kind}/{subject}", "admin.detect.holds.delete"},
		{"POST", "", "admin.unknown"},
		{"POST", "POST /v1/{x}", "admin.unknown"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			if got := AdminOperation(tc.method, tc.pattern); got != tc.want {
				t.Fatalf("%s %q: %q, want %q", tc.method, tc.pattern, got, tc.want)
			}
		})
	}
}

// TestAdminWritesAuditedOverTCP: writes on the TCP listener are audited
// too, named from their route, with the admin token's name as the source;
// a write without a valid token is audited with the peer's address.
func TestAdminWritesAuditedOverTCP(t *testing.T) {
	ev := &events{}
	tok, bt := adminToken(t, "laptop")
	f := newMFAFixture(t, Options{Events: ev, Audit: ev, TCP: &TCPOptions{Addr: "127.0.0.1:0", Tokens: []BearerToken{bt}}})
	ctx := context.Background()
	rc, err := NewRemoteClient("http://"+f.s.TCPAddr(), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-1")}}); err != nil {
		t.Fatal(err)
	}
	other, _ := adminToken(t, "other")
	bad, _ := NewRemoteClient("http://"+f.s.TCPAddr(), other, nil)
	if _, err := bad.SetSecret(ctx, "cred", SetSecretRequest{Fields: map[string][]byte{"k": []byte("v-2")}}); apiCode(err) != "unauthorized" {
		t.Fatalf("unknown token: %v", err)
	}
	got := ev.all()
	if len(got) != 2 {
		t.Fatalf("%d events: %+v", len(got), got)
	}
	if e := got[0]; e.Operation != "admin.secret.set" || e.Status != 200 || e.Decision != audit.Allow || !strings.Contains(e.Error, "token:laptop") {
		t.Errorf("event 0: %+v", e)
	}
	if e := got[1]; e.Source != "tcp:127.0.0.1" || e.Status != 401 || e.Decision != audit.Deny {
		t.Errorf("event 1: %+v", e)
	}
}

// TestStatusWriterFlush: a streamed answer (oauth login) still streams
// through the audited wrapper, and its status is recorded.
func TestStatusWriterFlush(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := &statusWriter{ResponseWriter: rec}
	_, _ = sw.Write([]byte("{}\n"))
	sw.Flush()
	if !rec.Flushed || sw.code() != http.StatusOK {
		t.Fatalf("flushed %v, code %d", rec.Flushed, sw.code())
	}
}
