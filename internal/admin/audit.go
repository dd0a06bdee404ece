package admin

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// Admin actions are audited: every admin request that changes something
// (any method but GET and HEAD) becomes one record of the durable audit log
// when it has been answered, whoever sent it — the CLI over the socket, a
// client of the TCP listener or the web console in process — with the
// principal, the action, the target, the status and the decision:
//
//	operation  admin.<action>  (the route's MFARoute.Action, e.g.
//	           admin.token.freeze; derived from the route if it has none)
//	token      the target token's public id (HMAC'd, so that an audit
//	           search by token finds what was done to it)
//	source     the principal (HMAC'd like every source)
//	decision   allow (2xx/3xx), deny (4xx: refused, invalid, no second
//	           factor), error (5xx)
//	rule       admin.<action>
//	error      "principal P" and what the handler noted (never a value)
//
// The second factor's own endpoints (/v1/mfa/...) are audited by the mfa
// package (admin.mfa.*) and not again here.

type noteKey struct{}

// actionNote is what a handler adds to its request's audit record.
type actionNote struct {
	token  string
	detail []string
}

// NoteTarget records the token an admin request acted on (its public id)
// and a detail for the request's audit record. detail must hold no secret
// value (names, venues, scopes, counts). Outside an audited request it
// does nothing.
func NoteTarget(r *http.Request, tokenID, detail string) {
	n, ok := r.Context().Value(noteKey{}).(*actionNote)
	if !ok {
		return
	}
	if tokenID != "" {
		n.token = tokenID
	}
	if detail != "" {
		n.detail = append(n.detail, detail)
	}
}

// auditAction returns what serves the request instead of w and r, and a
// function that writes the audit record once the handler returned; for
// a request that changes nothing it returns them unchanged.
func (s *Server) auditAction(w http.ResponseWriter, r *http.Request, pattern string, rt MFARoute) (http.ResponseWriter, *http.Request, func()) {
	if n, ok := r.Context().Value(eventNoteKey{}).(*eventNote); ok && s.o.Audit != nil {
		n.recorded = true // this route's record is written here (or by the mfa package)
	}
	if s.o.Audit == nil || r.Method == http.MethodGet || r.Method == http.MethodHead || strings.HasPrefix(routePath(pattern), PathMFA) {
		return w, r, func() {}
	}
	note := &actionNote{token: pathToken(pattern, r.URL.Path)}
	r = r.WithContext(context.WithValue(r.Context(), noteKey{}, note))
	sw := &statusWriter{ResponseWriter: w}
	action := rt.Action
	if action == "" {
		action = deriveAction(r.Method, pattern)
	}
	start := time.Now()
	return sw, r, func() {
		st := sw.status
		if st == 0 {
			st = http.StatusOK
		}
		dec := audit.Allow
		switch {
		case st >= 500:
			dec = audit.Error
		case st >= 400:
			dec = audit.Deny
		}
		p := PrincipalOf(r.Context())
		detail := "principal " + string(p)
		if len(note.detail) > 0 {
			detail += "; " + strings.Join(note.detail, "; ")
		}
		s.o.Audit.Record(context.WithoutCancel(r.Context()), audit.Event{
			Time: start, RequestID: requestID(r), TokenID: note.token, Source: string(p),
			Method: r.Method, Path: r.URL.Path, Operation: "admin." + action, Decision: dec, Rule: "admin." + action,
			Status: st, Latency: time.Since(start), Error: detail,
		})
	}
}

// pathToken is the token id in a request's path when its route is under
// /v1/tokens/{id}, so that a request refused before its handler ran (no
// second factor) still names its target.
func pathToken(pattern, path string) string {
	ps, rs := strings.Split(routePath(pattern), "/"), strings.Split(path, "/")
	if len(ps) != len(rs) || !strings.HasPrefix(routePath(pattern), PathTokens+"/{id}") {
		return ""
	}
	for i, seg := range ps {
		if seg == "{id}" {
			return rs[i]
		}
	}
	return ""
}

// routePath is the path of a ServeMux pattern ("POST /v1/x" → "/v1/x").
func routePath(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
}

// deriveAction names a route that has no MFARoute.Action: its literal
// path segments below /v1, joined by dots, and the method's verb when the
// path ends in a collection or an id ("POST /v1/panic" → "panic.post").
func deriveAction(method, pattern string) string {
	segs := strings.Split(strings.TrimPrefix(routePath(pattern), "/v1/"), "/")
	var parts []string
	last := ""
	for _, s := range segs {
		last = s
		if strings.HasPrefix(s, "{") || s == "" {
			continue
		}
		parts = append(parts, s)
	}
	if len(parts) <= 1 || strings.HasPrefix(last, "{") {
		parts = append(parts, strings.ToLower(method))
	}
	return strings.Join(parts, ".")
}

// statusWriter remembers the status a handler answered with. It passes
// Flush and Hijack through (the OAuth login streams its answer).
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

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("admin: hijack not supported")
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var (
	_ http.Flusher  = (*statusWriter)(nil)
	_ http.Hijacker = (*statusWriter)(nil)
)
