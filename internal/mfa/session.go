package mfa

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// SessionPrefix starts every admin session token; the rest is 32 random
// bytes in unpadded base64url (43 characters).
const SessionPrefix = "kss_"

const sessionTokenLen = len(SessionPrefix) + 43

// ErrMalformedSession is returned by ParseSessionToken.
var ErrMalformedSession = errors.New("mfa: malformed session token")

type session struct {
	principal Principal
	created   time.Time
	expires   time.Time
}

// Session is an admin session given to its holder by Login.
type Session struct {
	// Token is presented with later admin requests. It is shown to its
	// holder only; the server keeps its SHA-256 digest.
	Token   string
	Expires time.Time
}

// ParseSessionToken checks a session token's form and returns its digest.
func ParseSessionToken(s string) ([32]byte, error) {
	if len(s) != sessionTokenLen || s[:len(SessionPrefix)] != SessionPrefix {
		return [32]byte{}, ErrMalformedSession
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s[len(SessionPrefix):])
	if err != nil || len(raw) != 32 {
		return [32]byte{}, ErrMalformedSession
	}
	clear(raw)
	return sha256.Sum256([]byte(s)), nil
}

func newSessionToken(r io.Reader) (string, [32]byte, error) {
	raw := make([]byte, 32)
	defer clear(raw)
	if _, err := io.ReadFull(r, raw); err != nil {
		return "", [32]byte{}, fmt.Errorf("mfa: session token: %w", err)
	}
	tok := SessionPrefix + base64.RawURLEncoding.EncodeToString(raw)
	return tok, sha256.Sum256([]byte(tok)), nil
}

// Login checks a code (a session does not count) and opens an admin session
// for at.Principal lasting SessionTTL. ErrNotEnrolled if nothing is
// enrolled: there is then nothing to log in to.
func (m *Manager) Login(ctx context.Context, code string, at Attempt) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return Session{}, fmt.Errorf("mfa: load state: %w", err)
	}
	if st.State != StateActive {
		return Session{}, ErrNotEnrolled
	}
	if code == "" {
		m.event(ctx, at, "login", audit.Deny, "mfa.required", http.StatusUnauthorized, "no code presented")
		return Session{}, ErrRequired
	}
	method, err := m.verifyLocked(ctx, st, code, at)
	if err != nil {
		return Session{}, err
	}
	tok, digest, err := newSessionToken(m.rand)
	if err != nil {
		return Session{}, err
	}
	now := m.now()
	m.pruneLocked(now)
	s := session{principal: at.Principal, created: now, expires: now.Add(m.o.SessionTTL)}
	m.sessions[digest] = s
	m.event(ctx, at, "login", audit.Allow, "mfa.session_issued", http.StatusOK,
		fmt.Sprintf("session until %s, by %s", s.expires.UTC().Format(time.RFC3339), method))
	return Session{Token: tok, Expires: s.expires}, nil
}

// pruneLocked drops expired sessions and, beyond MaxSessions, the oldest.
func (m *Manager) pruneLocked(now time.Time) {
	for d, s := range m.sessions {
		if !now.Before(s.expires) {
			delete(m.sessions, d)
		}
	}
	for len(m.sessions) >= MaxSessions {
		var oldest [32]byte
		first := true
		for d, s := range m.sessions {
			if first || s.created.Before(m.sessions[oldest].created) {
				oldest, first = d, false
			}
		}
		delete(m.sessions, oldest)
	}
}

// checkSessionLocked accepts a live session of at.Principal. m.mu is held.
func (m *Manager) checkSessionLocked(ctx context.Context, tok string, at Attempt) error {
	digest, err := ParseSessionToken(tok)
	if err != nil {
		m.event(ctx, at, "verify", audit.Deny, "mfa.session_invalid", http.StatusUnauthorized, "malformed session token")
		return ErrSessionInvalid
	}
	now := m.now()
	s, ok := m.sessions[digest]
	switch {
	case !ok:
		m.event(ctx, at, "verify", audit.Deny, "mfa.session_invalid", http.StatusUnauthorized, "unknown session (expired, logged out, reset or server restarted)")
		return ErrSessionInvalid
	case !now.Before(s.expires):
		delete(m.sessions, digest)
		m.event(ctx, at, "verify", audit.Deny, "mfa.session_expired", http.StatusUnauthorized, "session expired")
		return ErrSessionInvalid
	case s.principal != at.Principal:
		m.event(ctx, at, "verify", audit.Deny, "mfa.session_principal", http.StatusUnauthorized,
			"session presented by another principal than the one that logged in ("+string(s.principal)+")")
		return ErrSessionInvalid
	}
	m.event(ctx, at, "verify", audit.Allow, "mfa.session", http.StatusOK, "")
	return nil
}

// Logout ends a session of at.Principal. It reports whether there was one.
func (m *Manager) Logout(ctx context.Context, tok string, at Attempt) bool {
	digest, err := ParseSessionToken(tok)
	if err != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[digest]
	if !ok || s.principal != at.Principal {
		return false
	}
	delete(m.sessions, digest)
	m.event(ctx, at, "logout", audit.Allow, "mfa.session_closed", http.StatusOK, "")
	return true
}

// SessionExpiry returns when a live session of p ends.
func (m *Manager) SessionExpiry(tok string, p Principal) (time.Time, bool) {
	digest, err := ParseSessionToken(tok)
	if err != nil {
		return time.Time{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[digest]
	if !ok || s.principal != p || !m.now().Before(s.expires) {
		return time.Time{}, false
	}
	return s.expires, true
}
