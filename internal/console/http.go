package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// contentSecurityPolicy allows only the console's own script and style
// files: no inline script or style (so an injected fragment cannot run),
// no framing, forms only to the console itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type ctxKey struct{}

type reqState struct {
	id   string
	sess *session
}

func state(r *http.Request) *reqState {
	if st, ok := r.Context().Value(ctxKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

// routes builds the handler: security headers and request ids on every
// answer, cross-origin protection (Sec-Fetch-Site / Origin) on every
// non-GET, then per route: the session, CSRF token, and the page.
func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", c.staticFiles(http.FileServerFS(static))))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.Handle("POST /logout", c.authed(c.logout, true))

	page := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, c.authed(h, true)) }
	page("GET /{$}", c.overview)
	mux.Handle("GET /live/overview", c.authed(c.liveOverview, false))
	page("GET /tokens", c.tokensPage)
	page("POST /tokens", c.createToken)
	page("POST /tokens/{id}/{action}", c.tokenAction)
	page("GET /credentials", c.credentialsPage)
	page("GET /policies", c.policiesPage)
	page("POST /policies/explain", c.explain)
	page("GET /budgets", c.budgetsPage)
	page("GET /audit", c.auditPage)
	page("GET /audit/{seq}", c.auditRecord)
	page("POST /audit/verify", c.auditVerify)
	page("GET /alerts", c.alertsPage)
	page("GET /killswitch", c.killPage)
	page("POST /killswitch/trip", c.killTrip)
	page("POST /killswitch/clear", c.killClear)

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.log.Warn("console: refused a cross-origin request", "method", r.Method, "path", r.URL.Path, "request_id", state(r).id,
			"origin", bounded(r.Header.Get("Origin")), "sec_fetch_site", bounded(r.Header.Get("Sec-Fetch-Site")))
		c.plainError(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	return c.base(cop.Handler(mux))
}

func bounded(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}

// base sets the headers every answer carries and the request id, bounds
// the body, and turns a panic into a fixed 500.
func (c *Console) base(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		st := &reqState{id: "con_" + hex.EncodeToString(b)}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		h.Set("Keystile-Request-Id", st.id)
		if c.tls {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		limit := int64(maxFormBytes)
		if r.URL.Path == "/policies/explain" {
			limit = maxExplainBytes + maxFormBytes
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				c.log.Error("console: handler panicked", "path", r.URL.Path, "request_id", st.id, "panic", v)
				c.plainError(w, r, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// staticFiles serves the embedded assets with a long cache lifetime
// (their names do not change within a version) and no directory listing.
func (c *Console) staticFiles(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "private, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// authed requires a live session; touch counts the request as activity.
// A page request without one is sent to the log-in page; anything else
// gets 401. Every non-GET request must carry the session's CSRF token.
func (c *Console) authed(h http.HandlerFunc, touch bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		var s *session
		if ck, err := r.Cookie(c.sessionCookie()); err == nil {
			s, _ = c.sessions.get(ck.Value, touch)
		}
		if s == nil {
			if r.Method == http.MethodGet && r.Header.Get("Keystile-Live") == "" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			c.plainError(w, r, http.StatusUnauthorized, "log in first")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := r.ParseForm(); err != nil {
				c.plainError(w, r, http.StatusBadRequest, "malformed form")
				return
			}
			if !s.checkCSRF(r.PostForm.Get("csrf")) {
				c.log.Warn("console: refused a request without a valid CSRF token", "path", r.URL.Path, "session", s.handle, "request_id", state(r).id)
				c.plainError(w, r, http.StatusForbidden, "missing or invalid CSRF token: reload the page")
				return
			}
		}
		state(r).sess = s
		h(w, r)
	})
}

// plainError answers with a fixed public message and the request id.
func (c *Console) plainError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + " (request " + state(r).id + ")\n"))
}

// view is what every page template gets.
type view struct {
	Title     string
	Nav       string
	Session   *sessionView
	RequestID string
	Now       time.Time
	Errors    []string
	Notices   []string
	Data      any
}

type sessionView struct {
	Name, Handle, CSRF string
	MFAActive          bool
	MFAUntil           time.Time
	Expires, Idle      time.Time
}

// render writes a page. Template errors are logged and answered 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title string, v *view) {
	t, ok := c.pages[name]
	if !ok {
		c.log.Error("console: no template", "name", name)
		c.plainError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	st := state(r)
	v.Title, v.Nav, v.RequestID, v.Now = title, name, st.id, c.now()
	if s := st.sess; s != nil {
		sv := &sessionView{Name: s.name, Handle: s.handle, CSRF: s.csrf, Expires: s.created.Add(c.sessions.ttl),
			Idle: s.seen().Add(c.sessions.idle)}
		if ms, err := c.o.MFA.Status(r.Context()); err == nil && ms.State == "active" {
			sv.MFAActive = true
			if v, exp := s.mfa(); v.Len() > 0 && exp.After(c.now()) {
				sv.MFAUntil = exp
			}
		}
		v.Session = sv
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.log.Error("console: render", "page", name, "request_id", st.id, "err", err)
		c.plainError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fragment writes a named template without the layout (live updates).
func (c *Console) fragment(w http.ResponseWriter, r *http.Request, page, name string, data any) {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, name, data); err != nil {
		c.log.Error("console: render fragment", "name", name, "request_id", state(r).id, "err", err)
		c.plainError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// userError is the message an operator sees for err: input errors and
// the admin API's refusals are explained; anything else is a fixed
// message with the request id (the detail goes to the log).
func (c *Console) userError(r *http.Request, what string, err error) string {
	var ae *apiError
	switch {
	case errors.Is(err, ErrInput):
		return err.Error()
	case errors.As(err, &ae) && ae.Status < 500:
		switch ae.Code {
		case "mfa_required", "mfa_session_invalid":
			return what + " needs your second factor: enter a current TOTP code in the form"
		case "mfa_invalid":
			return "the TOTP code is not valid"
		case "mfa_replay":
			return "this TOTP code was already used: wait for the next one"
		case "mfa_locked":
			return "too many wrong codes: second-factor checks are locked for a while"
		}
		// The admin API's own messages are written for operators and
		// name no secret value (admin.Server.fail).
		return what + " refused: " + ae.Message
	}
	c.log.Error("console: "+what+" failed", "request_id", state(r).id, "err", err)
	return what + " failed (request " + state(r).id + "; see the server log)"
}

// event audits one of the console's own actions (log-in, log-out, kill
// switch), in the shape of the admin API's action records.
func (c *Console) event(r *http.Request, action, decision string, status int, principal, detail string) {
	d := "principal " + principal + " via console"
	if detail != "" {
		d += "; " + detail
	}
	c.o.Events.Record(context.WithoutCancel(r.Context()), audit.Event{Time: c.now(), RequestID: state(r).id, Source: principal,
		Method: r.Method, Path: r.URL.Path, Operation: "admin." + action, Decision: decision, Rule: "admin." + action,
		Status: status, Error: d})
}
