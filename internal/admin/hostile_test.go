package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// hostileCanary is a secret value that must never appear in an answer or
// the log.
const hostileCanary = "CANARY-admin-hostile-secret-0042" // #nosec G101 -- throwaway test canary

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostileServer starts an admin server with the vault and token routes on
// a real SQLite database, logging into a buffer.
func hostileServer(t *testing.T) (*Server, *Client, *vault.Vault, *lockedBuffer) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := vault.Initialize(ctx, db.Vault(), secret.New(k), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(k)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, c := start(t, Options{Vault: v, Logger: log, Extra: func(mux *http.ServeMux) { TokenRoutes(mux, tokens, log) }})
	return s, c, v, logs
}

// rawAdmin writes payload on a new connection to the admin socket and
// reads one answer (nil when the server closed the connection).
func rawAdmin(t *testing.T, s *Server, payload string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("unix", s.o.Socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, payload)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer and no close: %v", err)
		}
		return nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, b
}

// socketClient is an http.Client over the admin socket that never
// follows redirects (so a redirect is seen, not obeyed).
func socketClient(s *Server) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", s.o.Socket)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// vaultState is what a hostile request must not change.
type vaultState struct {
	names  string
	tokens string
}

func stateOf(t *testing.T, c *Client) vaultState {
	t.Helper()
	ctx := context.Background()
	l, err := c.ListSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names, toks []string
	for _, i := range l {
		names = append(names, fmt.Sprintf("%s@%d/%s", i.Name, i.CurrentVersion, i.State))
	}
	tl, err := c.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range tl {
		toks = append(toks, i.ID+"/"+i.State)
	}
	return vaultState{names: strings.Join(names, ","), tokens: strings.Join(toks, ",")}
}

// TestHostileAdminRequests sends hostile requests to the admin API (path
// traversal and encoded slashes in names, method override headers,
// smuggling framings, invalid UTF-8, oversized and deeply nested bodies):
// each gets a clean 4xx (or a redirect that is never to a mutating
// endpoint), nothing in the vault or the token store changes, no answer
// or log line holds a secret value, and the server keeps serving.
func TestHostileAdminRequests(t *testing.T) {
	s, c, _, logs := hostileServer(t)
	ctx := context.Background()
	if _, err := c.SetSecret(ctx, "victim", SetSecretRequest{Fields: map[string][]byte{"secret": []byte(hostileCanary)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateToken(ctx, CreateTokenRequest{Name: "bot", Venues: []string{"generic"}, Scopes: []string{"account.read"}}); err != nil {
		t.Fatal(err)
	}
	hc := socketClient(s)
	body := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	setBody := body(SetSecretRequest{Fields: map[string][]byte{"secret": []byte(hostileCanary)}})

	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
	}{
		{"encoded traversal to rekey", "POST", "/v1/secrets/..%2fvault%2frekey", "{}", nil},
		{"encoded traversal to rekey (upper)", "POST", "/v1/secrets/..%2Fvault%2Frekey", "{}", nil},
		{"dot-dot to rekey", "POST", "/v1/secrets/../vault/rekey", "{}", nil},
		{"dot-dot from tokens to rekey", "POST", "/v1/tokens/../vault/rekey", "{}", nil},
		{"encoded dots to rekey", "POST", "/v1/secrets/%2e%2e/vault/rekey", "{}", nil},
		{"set a name with a slash", "PUT", "/v1/secrets/a%2fb", setBody, nil},
		{"set a dot-dot name", "PUT", "/v1/secrets/..", setBody, nil},
		{"set a dot-dot-slash name", "PUT", "/v1/secrets/..%2fvictim", setBody, nil},
		{"set a backslash name", "PUT", "/v1/secrets/..%5cvictim", setBody, nil},
		{"set a NUL name", "PUT", "/v1/secrets/victim%00", setBody, nil},
		{"set an invalid UTF-8 name", "PUT", "/v1/secrets/%ff%fe", setBody, nil},
		{"set a name with a newline", "PUT", "/v1/secrets/a%0d%0aX-Injected:%201", setBody, nil},
		{"set a very long name", "PUT", "/v1/secrets/" + strings.Repeat("a", 10000), setBody, nil},
		{"delete via dot-dot", "DELETE", "/v1/secrets/x/../victim", "", nil},
		{"delete via encoded dot-dot", "DELETE", "/v1/secrets/x%2f..%2fvictim", "", nil},
		{"revoke via dot-dot", "POST", "/v1/secrets/x/../victim/revoke", `{"compromised":true}`, nil},
		// The override headers are ignored: this is a plain read.
		{"method override to delete", "GET", "/v1/secrets/victim", "", http.Header{"X-Http-Method-Override": {"DELETE"}, "X-Http-Method": {"DELETE"}, "X-Method-Override": {"DELETE"}}},
		{"method override to rekey", "GET", "/v1/vault/rekey", "", http.Header{"X-Http-Method-Override": {"POST"}}},
		{"unknown method", "PURGE", "/v1/secrets/victim", "", nil},
		{"lowercase method", "delete", "/v1/secrets/victim", "", nil},
		{"invalid UTF-8 field name", "PUT", "/v1/secrets/fresh", `{"fields":{"\xff\xfe":"` + "Q0FOQVJZ" + `"}}`, nil},
		{"empty field name", "PUT", "/v1/secrets/fresh", `{"fields":{"":"Q0FOQVJZ"}}`, nil},
		{"no fields", "PUT", "/v1/secrets/fresh", `{"fields":{}}`, nil},
		{"null body", "PUT", "/v1/secrets/fresh", `null`, nil},
		{"deeply nested body", "PUT", "/v1/secrets/fresh", strings.Repeat(`{"fields":`, 20000) + strings.Repeat("}", 20000), nil},
		{"deeply nested array", "POST", "/v1/tokens", strings.Repeat("[", 200000), nil},
		{"duplicate keys", "PUT", "/v1/secrets/fresh", `{"fields":{"a":"Q0FOQVJZ"},"fields":{"a":"Q0FOQVJZ"},"must_exist":true}`, nil},
		{"token with invalid UTF-8 name", "POST", "/v1/tokens", `{"name":"\xff","venues":["generic"],"scopes":["account.read"]}`, nil},
		{"token with a bad CIDR", "POST", "/v1/tokens", `{"name":"x","venues":["generic"],"cidrs":["` + strings.Repeat("9", 500) + `"]}`, nil},
		{"token with a negative TTL", "POST", "/v1/tokens", `{"name":"x","venues":["generic"],"ttl_ns":-1}`, nil},
		{"rotate with a negative grace", "POST", "/v1/tokens/nope/rotate", `{"grace_ns":-1}`, nil},
		{"token action via dot-dot", "POST", "/v1/tokens/x/../../secrets/victim/revoke", `{"compromised":true}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := stateOf(t, c)
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, "http://keystile"+tc.path, rd)
			if err != nil {
				t.Fatalf("build request: %v", err)
			}
			req.URL.Opaque = tc.path // sent exactly as written
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			switch {
			case resp.StatusCode >= 400 && resp.StatusCode < 500:
			case resp.StatusCode == http.StatusOK && tc.method == http.MethodGet:
			case resp.StatusCode == http.StatusMovedPermanently || resp.StatusCode == http.StatusTemporaryRedirect:
				// ServeMux redirects an unclean path to its clean form
				// (307 keeps the method) without acting on it: the
				// state check below is what matters. See
				// TestHostileAdminClientNames for a client that follows.
			default:
				t.Errorf("status %d, want a 4xx: %.300s", resp.StatusCode, b)
			}
			if bytes.Contains(b, []byte(hostileCanary)) {
				t.Errorf("the answer holds the canary")
			}
			if after := stateOf(t, c); after != before {
				t.Errorf("state changed: %+v -> %+v", before, after)
			}
		})
	}

	// Framing attacks, raw over the socket.
	for _, tc := range []struct{ name, payload string }{
		{"two Content-Lengths", "PUT /v1/secrets/fresh HTTP/1.1\r\nHost: k\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n{}"},
		{"CL and TE", "PUT /v1/secrets/fresh HTTP/1.1\r\nHost: k\r\nContent-Length: 200\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"oversized header", "GET /v1/status HTTP/1.1\r\nHost: k\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"},
		{"header with a bare CR", "GET /v1/status HTTP/1.1\r\nHost: k\r\nX-A: a\rb\r\n\r\n"},
		{"oversized chunked body", "PUT /v1/secrets/fresh HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n", MaxBody+1) + strings.Repeat("a", MaxBody+1) + "\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := stateOf(t, c)
			resp, b := rawAdmin(t, s, tc.payload)
			if resp != nil && (resp.StatusCode < 400 || resp.StatusCode > 499) {
				t.Errorf("status %d, want a 4xx: %.200s", resp.StatusCode, b)
			}
			if after := stateOf(t, c); after != before {
				t.Errorf("state changed: %+v -> %+v", before, after)
			}
		})
	}

	if _, err := c.ShowSecret(ctx, "victim"); err != nil {
		t.Fatalf("the victim secret is gone or unreadable: %v", err)
	}
	// No hostile request reached rekey: this one is the first.
	if res, err := c.Rekey(ctx); err != nil || res.NewKEKVersion != 2 {
		t.Errorf("rekey after the hostile requests: version %d (%v), want 2 (none of them may have rekeyed)", res.NewKEKVersion, err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("server unhealthy: %v", err)
	}
	if strings.Contains(logs.String(), hostileCanary) {
		t.Errorf("the canary is in the admin log")
	}
}

// TestHostileAdminClientNames drives the real Client with hostile secret
// names and token ids (dot segments, slashes, encodings): whatever the
// server answers (including redirects of unclean paths, which the client
// reports and does not follow), no other secret or token is changed.
func TestHostileAdminClientNames(t *testing.T) {
	_, c, _, logs := hostileServer(t)
	ctx := context.Background()
	if _, err := c.SetSecret(ctx, "victim", SetSecretRequest{Fields: map[string][]byte{"secret": []byte(hostileCanary)}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.CreateToken(ctx, CreateTokenRequest{Name: "bot", Venues: []string{"generic"}, Scopes: []string{"account.read"}})
	if err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, c)
	for _, name := range []string{"..", ".", "../victim", "x/../victim", "x/../../v1/vault/rekey", "%2e%2e", "victim/", "/victim", "victim?x=1", "victim#x", "vic\x00tim", "\xff"} {
		_, _ = c.SetSecret(ctx, name, SetSecretRequest{Fields: map[string][]byte{"secret": []byte(hostileCanary)}})
		_, _ = c.RevokeSecret(ctx, name, true)
		_ = c.DeleteSecret(ctx, name)
		_, _ = c.TokenAction(ctx, name, "revoke")
		_, _ = c.TokenAction(ctx, name, "freeze")
		_, _ = c.RotateToken(ctx, name, 0)
		if after := stateOf(t, c); after != before {
			t.Fatalf("name %q changed the state: %+v -> %+v", name, before, after)
		}
	}
	if i, err := c.ShowToken(ctx, m.Info.ID); err != nil || i.State != "active" {
		t.Errorf("the token was touched: %+v %v", i, err)
	}
	if res, err := c.Rekey(ctx); err != nil || res.NewKEKVersion != 2 {
		t.Errorf("a hostile name reached rekey: version %d (%v)", res.NewKEKVersion, err)
	}
	if strings.Contains(logs.String(), hostileCanary) {
		t.Errorf("the canary is in the admin log")
	}
}

// TestHostileAdminTokenTTL: a token asked for with an absurd lifetime is
// capped at the maximum, never minted for longer.
func TestHostileAdminTokenTTL(t *testing.T) {
	_, c, _, _ := hostileServer(t)
	m, err := c.CreateToken(context.Background(), CreateTokenRequest{Name: "x", Venues: []string{"generic"}, TTL: time.Duration(1<<63 - 1)})
	if err != nil {
		// Refusing is fine too.
		return
	}
	if limit := time.Now().Add(720*time.Hour + time.Minute); m.Info.ExpiresAt.After(limit) {
		t.Errorf("token expires %v, past the 720h maximum", m.Info.ExpiresAt)
	}
}

// TestHostileAdminSlowClients: connections that never finish their
// headers do not stop the admin API from serving others, and are cut off
// after the server's read-header timeout.
func TestHostileAdminSlowClients(t *testing.T) {
	s, c, _, _ := hostileServer(t)
	const n = 30
	var conns []net.Conn
	for range n {
		conn, err := net.DialTimeout("unix", s.o.Socket, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		if _, err := io.WriteString(conn, "PUT /v1/secrets/slow HTTP/1.1\r\nHost: k\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	start := time.Now()
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("admin API blocked by slow clients: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("status took %v with slow clients connected", el)
	}
	for _, conn := range conns {
		_ = conn.SetReadDeadline(time.Now().Add(8 * time.Second))
		one := make([]byte, 1)
		_, err := conn.Read(one)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("a slow client was still connected after %v", time.Since(start))
		}
	}
	t.Logf("%d slow clients cut off after %v", n, time.Since(start))
	l, err := c.ListSecrets(context.Background())
	if err != nil || len(l) != 0 {
		t.Fatalf("after slow clients: %v %v", l, err)
	}
}
