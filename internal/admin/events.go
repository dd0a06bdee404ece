package admin

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"net"
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
// The source is the caller: the socket peer's uid ("uid:1000"), the
// admin bearer token's name on the TCP listener ("token:ops"), or the TCP
// peer's address when no token was accepted ("tcp:192.0.2.7"); the path
// names a secret or a token id, never a value; the decision is allow
// below 400, error from 500, deny otherwise. Both listeners record them.

// eventNote is filled by the MFA gate (which looks the route up) for the
// audited wrapper outside it: every layer in between may replace the
// request, so the route and the caller travel in the context.
type eventNote struct {
	pattern   string
	principal string
	recorded  bool // the route's own audit record (audit.go) covers it
}

type eventNoteKey struct{}

// noteRoute records the request's route and caller for its audit event.
func noteRoute(r *http.Request, pattern string) {
	if n, ok := r.Context().Value(eventNoteKey{}).(*eventNote); ok {
		n.pattern, n.principal = pattern, string(PrincipalOf(r.Context()))
	}
}

// audited records one audit event (Options.Events) per admin write that
// reaches the listener and is not covered by its route's own audit record
// (audit.go, Options.Audit): a caller the socket's uid check or the TCP
// listener's bearer check turns away, a route that does not exist or has
// no MFA classification — or every write, without Options.Audit. A
// request that reaches a classified route is recorded there, once.
func (s *Server) audited(next http.Handler) http.Handler {
	if s.o.Events == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		n := &eventNote{}
		r = r.WithContext(context.WithValue(r.Context(), eventNoteKey{}, n))
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if !n.recorded { // refused before its route: auth, no such route, unclassified
				s.o.Events.Record(r.Context(), adminEvent(r, n, sw.code(), start))
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// code is the status answered (200 when the handler wrote nothing).
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func adminEvent(r *http.Request, n *eventNote, status int, start time.Time) audit.Event {
	var b [10]byte
	_, _ = rand.Read(b[:])
	src := n.principal
	if src == "" {
		if uid := PeerUID(r.Context()); uid >= 0 {
			src = "uid:" + strconv.Itoa(uid)
		} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			src = "tcp:" + host
		}
	}
	e := audit.Event{Time: start, RequestID: "adm_" + strings.ToLower(idEncoding.EncodeToString(b[:])),
		Source: src, Method: r.Method, Path: r.URL.EscapedPath(),
		Operation: AdminOperation(r.Method, n.pattern), Status: status, Latency: time.Since(start)}
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
