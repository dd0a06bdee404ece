package admin

import (
	"crypto/rand"
	"encoding/base32"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// Admin writes are audited like gateway requests: one audit.Event each,
// with no venue and an operation "admin.<resource>.<verb>" named from the
// route (admin.secrets.set, admin.secrets.revoke, admin.tokens.create,
// admin.tokens.freeze, admin.vault.rekey, admin.oauth.login,
// admin.detect.holds.delete, ...; admin.unknown when no route matched).
// The source is the peer's uid ("uid:1000"); the path names a secret or a
// token id, never a value; the decision is allow below 400, error from
// 500, deny otherwise.

// statusWriter remembers the status answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Flush passes a flush through (streamed answers: oauth login).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func adminEvent(r *http.Request, status int, start time.Time) audit.Event {
	var b [10]byte
	_, _ = rand.Read(b[:])
	e := audit.Event{Time: start, RequestID: "adm_" + strings.ToLower(idEncoding.EncodeToString(b[:])),
		Source: "uid:" + strconv.Itoa(PeerUID(r.Context())), Method: r.Method, Path: r.URL.EscapedPath(),
		Operation: AdminOperation(r.Method, r.Pattern), Status: status, Latency: time.Since(start)}
	switch {
	case status >= 500:
		e.Decision = audit.Error
	case status >= 400:
		e.Decision = audit.Deny
	default:
		e.Decision = audit.Allow
	}
	return e
}

// AdminOperation names an admin route's operation from its method and
// ServeMux pattern ("POST /v1/tokens/{id}/freeze" → admin.tokens.freeze).
func AdminOperation(method, pattern string) string {
	_, path, ok := strings.Cut(pattern, " ")
	if !ok || pattern == "" {
		return "admin.unknown"
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) > 0 && segs[0] == "v1" {
		segs = segs[1:]
	}
	var static []string
	for _, s := range segs {
		if !strings.HasPrefix(s, "{") && s != "" {
			static = append(static, s)
		}
	}
	if len(static) == 0 {
		return "admin.unknown"
	}
	last := segs[len(segs)-1]
	if len(static) >= 2 && !strings.HasPrefix(last, "{") {
		return "admin." + strings.Join(static, ".")
	}
	verb := map[string]string{http.MethodPut: "set", http.MethodPost: "create", http.MethodDelete: "delete", http.MethodPatch: "update"}[method]
	if verb == "" {
		verb = strings.ToLower(method)
	}
	return "admin." + strings.Join(static, ".") + "." + verb
}

var _ http.Flusher = (*statusWriter)(nil)
