package console

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

type loginData struct {
	CSRF      string
	MFAActive bool
	LockedFor string
}

// loginPage shows the log-in form. Its CSRF token is a random value both
// in a short-lived cookie and in the form (there is no session yet).
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok, err := newRandom(32)
	if err != nil {
		c.plainError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	http.SetCookie(w, c.cookie(c.loginCookie(), tok, 600))
	d := loginData{CSRF: tok}
	if st, err := c.o.MFA.Status(r.Context()); err == nil && st.State == mfa.StateActive {
		d.MFAActive = true
	}
	v := &view{Data: d}
	if msg != "" {
		v.Errors = []string{msg}
	}
	c.render(w, r, status, "login", "Log in", v)
}

// loginFailed is the one message for a wrong token or code: it does not
// say which part was wrong.
const loginFailed = "log-in failed: check the admin token and the TOTP code"

// login checks the admin token (admin.tokens, by digest, in constant
// time) and, once a second factor is enrolled, a TOTP or recovery code,
// which buys the session's admin MFA session (the admin API's
// /v1/mfa/login, audited there). Failures count against the source
// address.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := r.ParseForm(); err != nil {
		c.plainError(w, r, http.StatusBadRequest, "malformed form")
		return
	}
	ck, err := r.Cookie(c.loginCookie())
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		c.showLogin(w, r, http.StatusForbidden, "the log-in form expired: try again")
		return
	}
	src := clientAddr(r)
	if d := c.limiter.wait(src); d > 0 {
		secs := int64(d/time.Second) + 1
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		c.event(r, "console.login", audit.Deny, http.StatusTooManyRequests, "console:?", "too many failed log-ins from this address")
		c.showLogin(w, r, http.StatusTooManyRequests, "too many failed log-ins from your address: wait "+strconv.FormatInt(secs, 10)+" s")
		return
	}
	fail := func(principal, why string) {
		lock := c.limiter.fail(src)
		c.log.Warn("console: log-in failed", "remote", src.String(), "principal", principal, "why", why, "request_id", state(r).id, "lockout", lock)
		c.event(r, "console.login", audit.Deny, http.StatusUnauthorized, principal, why)
		c.showLogin(w, r, http.StatusUnauthorized, loginFailed)
	}
	raw := strings.TrimSpace(r.PostForm.Get("token"))
	name, ok := admin.MatchBearer(c.o.AdminTokens, raw)
	if !ok {
		fail("console:?", "no admin token of admin.tokens")
		return
	}
	s, val, err := c.sessions.create(name)
	if err != nil {
		c.plainError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	st, err := c.o.MFA.Status(r.Context())
	if err != nil {
		c.sessions.end(s)
		c.log.Error("console: second-factor status", "request_id", state(r).id, "err", err)
		c.showLogin(w, r, http.StatusServiceUnavailable, "the second-factor check failed; try again (request "+state(r).id+")")
		return
	}
	if st.State == mfa.StateActive {
		code, err := parseCode(r.PostForm)
		if err != nil || code == "" {
			c.sessions.end(s)
			fail(string(s.principal), "no valid second-factor code")
			return
		}
		var grant admin.MFASessionGrant
		if err := c.call(r.Context(), s, http.MethodPost, admin.PathMFA+"/login", admin.MFACodeRequest{Code: code}, &grant, ""); err != nil {
			c.sessions.end(s)
			if mfaRefusal(err) {
				fail(string(s.principal), "second factor refused")
				return
			}
			c.log.Error("console: second-factor log-in", "request_id", state(r).id, "err", err)
			c.showLogin(w, r, http.StatusServiceUnavailable, "the second-factor check failed; try again (request "+state(r).id+")")
			return
		}
		s.setMFA(secret.New([]byte(grant.Session)), grant.ExpiresAt)
	}
	c.limiter.ok(src)
	state(r).sess = s
	http.SetCookie(w, c.cookie(c.loginCookie(), "", -1))
	http.SetCookie(w, c.cookie(c.sessionCookie(), val, int(c.sessions.ttl/time.Second)))
	c.log.Info("console: logged in", "principal", string(s.principal), "session", s.handle, "remote", src.String())
	c.event(r, "console.login", audit.Allow, http.StatusSeeOther, string(s.principal), "session "+s.handle)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the session and its admin MFA session.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	s := state(r).sess
	if v, _ := s.mfa(); v.Len() > 0 {
		_ = c.call(r.Context(), s, http.MethodPost, admin.PathMFA+"/logout", struct{}{}, nil, "")
	}
	c.sessions.end(s)
	http.SetCookie(w, c.cookie(c.sessionCookie(), "", -1))
	c.event(r, "console.logout", audit.Allow, http.StatusSeeOther, string(s.principal), "session "+s.handle)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
