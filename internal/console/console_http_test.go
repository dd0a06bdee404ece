package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConsoleRefusals: without a session nothing is served but the
// log-in page; a non-GET without the session's CSRF token, or from
// another origin, is refused; wrong credentials are refused with one
// fixed message and limited per source; every answer carries the
// security headers.
func TestConsoleRefusals(t *testing.T) {
	r := startRig(t, rigOptions{})
	anon := r.client()
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		location           string
	}{
		{"overview", "GET", "/", nil, http.StatusSeeOther, "/login"},
		{"tokens", "GET", "/tokens", nil, http.StatusSeeOther, "/login"},
		{"audit record", "GET", "/audit/1", nil, http.StatusSeeOther, "/login"},
		{"live fragment", "GET", "/live/overview", map[string]string{"Keystile-Live": "1"}, http.StatusUnauthorized, ""},
		{"create token", "POST", "/tokens", nil, http.StatusUnauthorized, ""},
		{"freeze", "POST", "/tokens/tok_abcd1234/freeze", nil, http.StatusUnauthorized, ""},
		{"kill switch", "POST", "/killswitch/trip", nil, http.StatusUnauthorized, ""},
		{"logout", "POST", "/logout", nil, http.StatusUnauthorized, ""},
		{"unknown", "GET", "/nope", nil, http.StatusNotFound, ""},
		{"static listing", "GET", "/static/", nil, http.StatusNotFound, ""},
	} {
		t.Run("no session/"+tc.name, func(t *testing.T) {
			var form url.Values
			if tc.method == "POST" {
				form = url.Values{"name": {"x"}}
			}
			a := anon.do(tc.method, tc.path, form, tc.hdr)
			if a.status != tc.status || a.header.Get("Location") != tc.location {
				t.Fatalf("%d %q %s", a.status, a.header.Get("Location"), a.body)
			}
		})
	}

	c := r.client()
	csrf := c.login()
	if csrf == "" {
		t.Fatal("no CSRF token on the overview")
	}
	a := c.do("GET", "/tokens", nil, nil)
	csp := a.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP %q", csp)
	}
	for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if a.header.Get(k) != v {
			t.Errorf("%s: %q", k, a.header.Get(k))
		}
	}
	if regexp.MustCompile(`(?i)<script>|<script [^>]*>[^<]|\sstyle=|\son[a-z]+=`).MatchString(a.body) {
		t.Error("inline script, style or handler in a page")
	}
	before := len(listTokens(t, r))
	create := url.Values{"name": {"csrf-probe"}, "venues": {"binance"}, "scopes": {"market.read"}, "ttl": {"1h"}}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no CSRF token", create, nil},
		{"wrong CSRF token", withCSRF(create, otherFirst(csrf)), nil},
		{"cross-site with a good token", withCSRF(create, csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"foreign origin with a good token", withCSRF(create, csrf), map[string]string{"Origin": "https://evil.example"}},
	} {
		t.Run("post/"+tc.name, func(t *testing.T) {
			if a := c.do("POST", "/tokens", tc.form, tc.hdr); a.status != http.StatusForbidden {
				t.Fatalf("%d %s", a.status, a.body)
			}
		})
	}
	if n := len(listTokens(t, r)); n != before {
		t.Fatalf("a refused request created a token (%d -> %d)", before, n)
	}
	// The same form with the token is accepted (read-only scopes: no code).
	if a := c.do("POST", "/tokens", withCSRF(create, csrf), map[string]string{"Origin": r.url, "Sec-Fetch-Site": "same-origin"}); a.status != 200 || !strings.Contains(a.body, "kst_live_") {
		t.Fatalf("good form: %d %s", a.status, tail(a.body, 2000))
	}

	// Wrong log-ins: one message, then the source waits.
	bad := r.client()
	for i := range 7 {
		lp := bad.do("GET", "/login", nil, nil)
		form := url.Values{"csrf": {csrfOf(lp.body)}, "token": {"ksa_" + strings.Repeat("A", 43)}, "totp": {"123456"}}
		a := bad.do("POST", "/login", form, nil)
		want := http.StatusUnauthorized
		if i >= 5 {
			want = http.StatusTooManyRequests
		}
		if a.status != want || (want == 401 && !strings.Contains(a.body, "log-in failed: check the admin token and the TOTP code")) {
			t.Fatalf("attempt %d: %d %s", i, a.status, tail(a.body, 800))
		}
	}
	// A log-in form without its cookie (another site posting it) is refused.
	if a := r.client().do("POST", "/login", url.Values{"csrf": {"x"}, "token": {r.adminTok}}, nil); a.status != http.StatusForbidden {
		t.Fatalf("log-in without its cookie: %d", a.status)
	}
}

func withCSRF(v url.Values, csrf string) url.Values {
	out := url.Values{}
	for k, x := range v {
		out[k] = x
	}
	out.Set("csrf", csrf)
	return out
}

func listTokens(t *testing.T, r *rig) []string {
	t.Helper()
	l, err := r.admin.ListTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range l {
		ids = append(ids, x.ID)
	}
	return ids
}

// TestConsoleSession: the cookie's attributes; log-out ends the session
// (the old cookie no longer works); a wrong TOTP code does not log in.
func TestConsoleSession(t *testing.T) {
	r := startRig(t, rigOptions{})
	if st, err := r.admin.Status(t.Context()); err != nil || st.Console != r.url {
		t.Fatalf("status names the console %q (%v), want %s", st.Console, err, r.url)
	}
	c := r.client()
	lp := c.do("GET", "/login", nil, nil)
	form := url.Values{"csrf": {csrfOf(lp.body)}, "token": {r.adminTok}, "totp": {"000000"}}
	if a := c.do("POST", "/login", form, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", a.status)
	}
	lp = c.do("GET", "/login", nil, nil)
	form = url.Values{"csrf": {csrfOf(lp.body)}, "token": {r.adminTok}}
	if a := c.do("POST", "/login", form, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("no code with MFA enrolled: %d", a.status)
	}
	lp = c.do("GET", "/login", nil, nil)
	form = url.Values{"csrf": {csrfOf(lp.body)}, "token": {r.adminTok}, "totp": {r.code()}}
	a := c.do("POST", "/login", form, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("log-in: %d %s", a.status, a.body)
	}
	var sc string
	for _, h := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(h, "keystile-console=") {
			sc = h
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"} {
		if !strings.Contains(sc, want) {
			t.Errorf("session cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Secure") || strings.Contains(sc, "Domain") {
		t.Errorf("plain-HTTP session cookie %q", sc)
	}
	cookie := strings.TrimPrefix(strings.SplitN(sc, ";", 2)[0], "keystile-console=")
	ov := c.do("GET", "/", nil, nil)
	if a := c.do("POST", "/logout", url.Values{"csrf": {csrfOf(ov.body)}}, nil); a.status != http.StatusSeeOther || a.header.Get("Location") != "/login" {
		t.Fatalf("log-out: %d", a.status)
	}
	replay := r.client()
	if a := replay.do("GET", "/", nil, map[string]string{"Cookie": "keystile-console=" + cookie}); a.status != http.StatusSeeOther {
		t.Fatalf("the ended session still works: %d", a.status)
	}
}

// TestConsoleIdleTimeout: a session ends after idle_timeout without a
// request; live updates do not keep it alive.
func TestConsoleIdleTimeout(t *testing.T) {
	r := startRig(t, rigOptions{noMFA: true, extra: "  session_ttl: 1m\n  idle_timeout: 2s\n"})
	c := r.client()
	c.login()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if a := c.do("GET", "/live/overview", nil, map[string]string{"Keystile-Live": "1"}); a.status != 200 && time.Now().Before(deadline.Add(-time.Second)) {
			t.Fatalf("live fragment within the idle time: %d", a.status)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if a := c.do("GET", "/", nil, nil); a.status != http.StatusSeeOther {
		t.Fatalf("session survived its idle timeout: %d", a.status)
	}
}

// otherFirst is s with its first character changed (a random token may
// start with any character: "x"+s[1:] was s itself once in 64 runs).
func otherFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}
