package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

// MaxSessions bounds the console sessions kept; the least recently used
// one is ended beyond it.
const MaxSessions = 64

// Cookie names: with TLS the session cookie carries the __Host- prefix
// (the browser then insists on Secure, Path=/ and no Domain).
const (
	cookieTLS   = "__Host-keystile-console"
	cookiePlain = "keystile-console"
	loginTLS    = "__Host-keystile-login"
	loginPlain  = "keystile-login"
)

// session is one logged-in operator. The browser holds only the random
// cookie value; the server keeps its SHA-256.
type session struct {
	digest    [32]byte
	handle    string // public id for logs and audit records: "cs_" + 8 hex digits
	name      string // the admin token's name
	principal mfa.Principal
	csrf      string
	created   time.Time

	mu       sync.Mutex
	lastSeen time.Time
	// mfaSession is the admin API session (kss_...) bought with the
	// log-in's TOTP code; it never leaves the server.
	mfaSession secret.Value
	mfaExpires time.Time
}

func (s *session) mfa() (secret.Value, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mfaSession, s.mfaExpires
}

func (s *session) setMFA(v secret.Value, exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mfaSession.Wipe()
	s.mfaSession, s.mfaExpires = v, exp
}

// sessions is the server's session table.
type sessions struct {
	ttl, idle time.Duration
	now       func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newRandom(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// create opens a session and returns it with the cookie value.
func (ss *sessions) create(name string) (*session, string, error) {
	val, err := newRandom(32)
	if err != nil {
		return nil, "", err
	}
	csrf, err := newRandom(32)
	if err != nil {
		return nil, "", err
	}
	d := sha256.Sum256([]byte(val))
	now := ss.now()
	s := &session{digest: d, handle: "cs_" + hex.EncodeToString(d[:4]), name: name,
		principal: mfa.Principal("console:" + name), csrf: csrf, created: now, lastSeen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expireLocked(now)
	if len(ss.m) >= MaxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.seen().Before(oldest.seen()) {
				oldest = o
			}
		}
		ss.dropLocked(oldest)
	}
	ss.m[d] = s
	return s, val, nil
}

func (s *session) seen() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeen
}

// get finds the live session of a cookie value; touch counts the request
// as activity (live updates do not).
func (ss *sessions) get(val string, touch bool) (*session, bool) {
	if val == "" || len(val) > 128 {
		return nil, false
	}
	d := sha256.Sum256([]byte(val))
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[d]
	if !ok {
		return nil, false
	}
	if ss.expired(s, now) {
		ss.dropLocked(s)
		return nil, false
	}
	if touch {
		s.mu.Lock()
		s.lastSeen = now
		s.mu.Unlock()
	}
	return s, true
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return !now.Before(s.created.Add(ss.ttl)) || !now.Before(s.seen().Add(ss.idle))
}

func (ss *sessions) expireLocked(now time.Time) {
	for _, s := range ss.m {
		if ss.expired(s, now) {
			ss.dropLocked(s)
		}
	}
}

func (ss *sessions) dropLocked(s *session) {
	if s == nil {
		return
	}
	delete(ss.m, s.digest)
	s.setMFA(secret.Value{}, time.Time{})
}

// end ends a session.
func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.dropLocked(s)
}

// count is the number of live sessions.
func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expireLocked(ss.now())
	return len(ss.m)
}

// checkCSRF compares a form's token with the session's in constant time.
func (s *session) checkCSRF(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}

// cookie builds a cookie of this server: HttpOnly, SameSite=Strict,
// Path=/, Secure (and the __Host- name) over TLS.
func (c *Console) cookie(name, val string, maxAge int) *http.Cookie {
	// Secure only over TLS: a plain console is loopback-only (Listen), and
	// a Secure cookie would not be sent back over plain HTTP.
	return &http.Cookie{Name: name, Value: val, Path: "/", HttpOnly: true, Secure: c.tls, SameSite: http.SameSiteStrictMode, MaxAge: maxAge} // #nosec G124 -- Secure whenever TLS is on; see above
}

func (c *Console) sessionCookie() string {
	if c.tls {
		return cookieTLS
	}
	return cookiePlain
}

func (c *Console) loginCookie() string {
	if c.tls {
		return loginTLS
	}
	return loginPlain
}
