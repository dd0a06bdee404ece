package mfa

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// Where the TOTP secret lives in the vault. The admin API refuses secret
// writes and removals of names starting with ReservedPrefix, so only this
// package changes it.
const (
	SecretName     = "keystile.admin-mfa" // #nosec G101 -- a credential name, not a value
	SecretField    = "totp_secret"
	ReservedPrefix = "keystile."
)

// Recovery codes per enrolment.
const (
	MinRecoveryCodes     = 8
	MaxRecoveryCodes     = 32
	DefaultRecoveryCodes = 10
)

// Defaults of Options.
const (
	DefaultSessionTTL  = 5 * time.Minute
	DefaultMaxFailures = 5
	DefaultLockout     = 30 * time.Second
	DefaultMaxLockout  = time.Hour
	// MaxSessions bounds the live sessions kept in memory; the oldest is
	// dropped beyond it.
	MaxSessions = 256
)

const (
	recoveryKeyPurpose = "admin.mfa.recovery.v1"
	// secretRotationDays keeps doctor from asking to rotate the TOTP
	// secret like a venue key: it changes by re-enrolling.
	secretRotationDays = 3650
)

// Enrolment states (State.State).
const (
	StatePending = "pending" // secret stored, waiting for a first good code
	StateActive  = "active"  // sensitive admin actions need a second factor
)

// Methods by which Authorize let a request through.
type Method string

// Methods.
const (
	MethodNone     Method = "none" // nothing is enrolled: no second factor needed
	MethodTOTP     Method = "totp"
	MethodRecovery Method = "recovery_code"
	MethodSession  Method = "session"
)

// Errors callers branch on.
var (
	ErrNotEnrolled         = errors.New("mfa: no second factor is enrolled")
	ErrAlreadyEnrolled     = errors.New("mfa: a second factor is already enrolled (reset it first: keystile mfa reset)")
	ErrNoPendingEnrollment = errors.New("mfa: no enrolment is waiting for confirmation (start one: keystile mfa enroll)")
	ErrRequired            = errors.New("mfa: this action needs a second factor")
	ErrInvalidCode         = errors.New("mfa: the code is not valid")
	ErrReplay              = errors.New("mfa: the code was already used; wait for the next one")
	ErrSessionInvalid      = errors.New("mfa: the admin session is expired, unknown or not this caller's")
	ErrInvalidInput        = errors.New("mfa: invalid input")
)

// LockedError refuses an attempt during a lockout after wrong codes.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return "mfa: too many wrong codes: locked until " + e.Until.UTC().Format(time.RFC3339)
}

// Principal names who acts on the admin API: "uid:1000" for a unix socket
// peer, "token:NAME" for an admin bearer token of admin.listen.
type Principal string

// Attempt describes the admin request a check is made for; it goes into
// the audit event.
type Attempt struct {
	Principal Principal
	// Action is the sensitive action asked for ("secret.set", ...).
	Action    string
	RequestID string
	Method    string
	Path      string
}

// Credentials are the second-factor inputs a request carries.
type Credentials struct {
	// Session is an admin session token from Login ("" for none).
	Session string
	// Code is a TOTP or recovery code as typed ("" for none).
	Code string
	// RequireCode refuses sessions: only a code counts (Login).
	RequireCode bool
}

// State is the stored enrolment.
type State struct {
	// State is "" (nothing enrolled), StatePending or StateActive.
	State      string
	CreatedAt  time.Time
	EnrolledAt time.Time
	// LastStep is the last TOTP step accepted (0: none); only later steps
	// are accepted.
	LastStep int64
	// Failures counts wrong codes in a row; LastFailure is the last one.
	Failures    int
	LastFailure time.Time
	// LockedUntil refuses every attempt before it.
	LockedUntil time.Time
	// RecoveryLeft is the number of unused recovery codes. Load sets it;
	// Update ignores it.
	RecoveryLeft int
}

// Store persists the enrolment. Implementations are safe for concurrent
// use, also by several processes sharing the database.
type Store interface {
	// Load returns the state; the zero State when nothing is enrolled.
	Load(ctx context.Context) (State, error)
	// Update runs fn on the current state (the zero State if none) in one
	// transaction and stores what fn leaves, unless fn returns an error,
	// which Update returns. A State "" deletes the enrolment and every
	// recovery code. It returns the stored state.
	Update(ctx context.Context, fn func(*State) error) (State, error)
	// SetRecoveryCodes replaces every recovery code by these digests.
	SetRecoveryCodes(ctx context.Context, digests [][]byte) error
	// UseRecoveryCode marks the unused code with this digest used at now;
	// false if there is no such unused code.
	UseRecoveryCode(ctx context.Context, digest []byte, now time.Time) (bool, error)
}

// Secrets is what the manager needs of the vault.
type Secrets interface {
	Set(ctx context.Context, name string, fields map[string]secret.Value, o vault.SetOptions) (vault.Info, error)
	WithCredential(ctx context.Context, name string, fn func(*vault.Credential) error) error
	Delete(ctx context.Context, name string) error
	DeriveKey(purpose string) (secret.Value, error)
}

// Options configure a Manager. Zero values of optional fields are safe.
type Options struct {
	// Store keeps the enrolment state. Required.
	Store Store
	// Secrets is the vault holding the TOTP secret. Required.
	Secrets Secrets
	// Audit receives one event per enrolment step, check, failure,
	// session and reset. If nil, events are only logged.
	Audit audit.Sink
	// Logger; if nil, discard.
	Logger *slog.Logger
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Rand makes session tokens. If nil, crypto/rand.
	Rand io.Reader
	// SessionTTL is a session's lifetime. If 0, DefaultSessionTTL.
	SessionTTL time.Duration
	// MaxFailures wrong codes in a row are answered at once; then each
	// attempt waits for a lockout. If 0, DefaultMaxFailures.
	MaxFailures int
	// Lockout is the first lockout, doubled per further failure up to
	// MaxLockout. If 0, DefaultLockout and DefaultMaxLockout.
	Lockout, MaxLockout time.Duration
}

// Manager checks second factors and keeps admin sessions. It is safe for
// concurrent use; checks are serialised.
type Manager struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	rand  io.Reader
	audit audit.Sink

	mu       sync.Mutex // serialises checks and guards sessions
	sessions map[[32]byte]session
}

// New returns a Manager.
func New(o Options) (*Manager, error) {
	if o.Store == nil || o.Secrets == nil {
		return nil, errors.New("mfa: store and secrets are required")
	}
	if o.SessionTTL < 0 || o.MaxFailures < 0 || o.Lockout < 0 || o.MaxLockout < 0 {
		return nil, errors.New("mfa: negative option")
	}
	m := &Manager{o: o, log: o.Logger, now: o.Now, rand: o.Rand, audit: o.Audit, sessions: map[[32]byte]session{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.audit == nil {
		m.audit = audit.Discard{}
	}
	if m.o.SessionTTL == 0 {
		m.o.SessionTTL = DefaultSessionTTL
	}
	if m.o.MaxFailures == 0 {
		m.o.MaxFailures = DefaultMaxFailures
	}
	if m.o.Lockout == 0 {
		m.o.Lockout = DefaultLockout
	}
	if m.o.MaxLockout == 0 {
		m.o.MaxLockout = max(DefaultMaxLockout, m.o.Lockout)
	}
	if m.o.MaxLockout < m.o.Lockout {
		return nil, errors.New("mfa: max lockout below lockout")
	}
	return m, nil
}

// SessionTTL is the lifetime of new sessions.
func (m *Manager) SessionTTL() time.Duration { return m.o.SessionTTL }

// Status is the enrolment as the admin API shows it: no secret, no code.
type Status struct {
	// State is "none", StatePending or StateActive.
	State             string
	CreatedAt         time.Time
	EnrolledAt        time.Time
	RecoveryCodesLeft int
	Failures          int
	LockedUntil       time.Time
	Sessions          int
}

// Status reports the enrolment.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("mfa: status: %w", err)
	}
	s := Status{State: st.State, CreatedAt: st.CreatedAt, EnrolledAt: st.EnrolledAt, RecoveryCodesLeft: st.RecoveryLeft,
		Failures: st.Failures}
	if s.State == "" {
		s.State = "none"
	}
	now := m.now()
	if now.Before(st.LockedUntil) {
		s.LockedUntil = st.LockedUntil
	}
	m.mu.Lock()
	for _, ss := range m.sessions {
		if now.Before(ss.expires) {
			s.Sessions++
		}
	}
	m.mu.Unlock()
	return s, nil
}

// Required reports whether sensitive actions need a second factor: an
// enrolment is active.
func (m *Manager) Required(ctx context.Context) (bool, error) {
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return false, fmt.Errorf("mfa: load state: %w", err)
	}
	return st.State == StateActive, nil
}

// Authorize decides whether a request carrying c may perform at.Action.
// Without an active enrolment every request may (MethodNone). Otherwise a
// valid session of the same principal (unless c.RequireCode), or a valid
// TOTP or recovery code, is needed: ErrRequired if there is none,
// ErrSessionInvalid, ErrInvalidCode, ErrMalformedCode, ErrReplay or
// *LockedError if it is not good. A session is tried first, so that a code
// sent along is not spent when the session suffices.
func (m *Manager) Authorize(ctx context.Context, c Credentials, at Attempt) (Method, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return "", fmt.Errorf("mfa: load state: %w", err)
	}
	if st.State != StateActive {
		return MethodNone, nil
	}
	if c.Session != "" && !c.RequireCode {
		err := m.checkSessionLocked(ctx, c.Session, at)
		if err == nil {
			return MethodSession, nil
		}
		if c.Code == "" {
			return "", err
		}
	}
	if c.Code == "" {
		m.event(ctx, at, "verify", audit.Deny, "mfa.required", http.StatusUnauthorized, "no code or session presented")
		return "", ErrRequired
	}
	return m.verifyLocked(ctx, st, c.Code, at)
}

// verifyLocked checks a code against the active enrolment st. m.mu is held.
func (m *Manager) verifyLocked(ctx context.Context, st State, raw string, at Attempt) (Method, error) {
	now := m.now()
	if now.Before(st.LockedUntil) {
		m.event(ctx, at, "verify", audit.Deny, "mfa.locked", http.StatusTooManyRequests, "locked after wrong codes; the code was not checked")
		return "", &LockedError{Until: st.LockedUntil}
	}
	code, err := ParseCode(raw)
	if err != nil {
		return "", m.failLocked(ctx, at, "verify", "mfa.malformed_code", ErrMalformedCode)
	}
	switch code.kind {
	case KindTOTP:
		step, ok, err := m.match(ctx, code, now)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", m.failLocked(ctx, at, "verify", "mfa.invalid_code", ErrInvalidCode)
		}
		if step <= st.LastStep {
			return "", m.failLocked(ctx, at, "verify", "mfa.replay", ErrReplay)
		}
		_, err = m.o.Store.Update(ctx, func(s *State) error {
			if s.State != StateActive {
				return ErrNotEnrolled
			}
			if step <= s.LastStep { // another process used it meanwhile
				return ErrReplay
			}
			s.LastStep, s.Failures, s.LockedUntil = step, 0, time.Time{}
			return nil
		})
		if errors.Is(err, ErrReplay) {
			return "", m.failLocked(ctx, at, "verify", "mfa.replay", ErrReplay)
		}
		if err != nil {
			return "", fmt.Errorf("mfa: record the code's step: %w", err)
		}
		m.event(ctx, at, "verify", audit.Allow, "mfa.totp", http.StatusOK, "")
		return MethodTOTP, nil
	default:
		digest, err := m.recoveryDigest(code)
		if err != nil {
			return "", err
		}
		used, err := m.o.Store.UseRecoveryCode(ctx, digest, now)
		if err != nil {
			return "", fmt.Errorf("mfa: use recovery code: %w", err)
		}
		if !used {
			return "", m.failLocked(ctx, at, "verify", "mfa.invalid_code", ErrInvalidCode)
		}
		after, err := m.o.Store.Update(ctx, func(s *State) error {
			s.Failures, s.LockedUntil = 0, time.Time{}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("mfa: clear failures: %w", err)
		}
		left, err := m.o.Store.Load(ctx)
		if err != nil {
			left = after
		}
		m.event(ctx, at, "recovery_code", audit.Allow, "mfa.recovery_code", http.StatusOK,
			fmt.Sprintf("recovery code used; %d left", left.RecoveryLeft))
		return MethodRecovery, nil
	}
}

// failLocked counts a wrong code, starts or extends a lockout, audits and
// returns cause. m.mu is held.
func (m *Manager) failLocked(ctx context.Context, at Attempt, op, rule string, cause error) error {
	now := m.now()
	st, err := m.o.Store.Update(ctx, func(s *State) error {
		if s.State == "" {
			return ErrNotEnrolled
		}
		s.Failures++
		s.LastFailure = now
		if over := s.Failures - m.o.MaxFailures; over >= 0 {
			s.LockedUntil = now.Add(m.lockout(over))
		}
		return nil
	})
	if errors.Is(err, ErrNotEnrolled) { // reset meanwhile: nothing to count against
		m.event(ctx, at, op, audit.Deny, rule, http.StatusUnauthorized, "no enrolment to count the failure against")
		return cause
	}
	if err != nil {
		m.log.Error("mfa: could not count a wrong code", "err", err)
		m.event(ctx, at, op, audit.Deny, rule, http.StatusUnauthorized, "failure not counted: store error")
		return cause
	}
	detail := fmt.Sprintf("wrong codes in a row: %d", st.Failures)
	if !st.LockedUntil.IsZero() && now.Before(st.LockedUntil) {
		detail += "; locked until " + st.LockedUntil.UTC().Format(time.RFC3339)
	}
	m.event(ctx, at, op, audit.Deny, rule, http.StatusUnauthorized, detail)
	return cause
}

// lockout is the wait after over failures beyond MaxFailures: Lockout
// doubled over times, at most MaxLockout.
func (m *Manager) lockout(over int) time.Duration {
	d := m.o.Lockout
	for i := 0; i < over && d < m.o.MaxLockout; i++ {
		if d > m.o.MaxLockout/2 {
			return m.o.MaxLockout
		}
		d *= 2
	}
	return min(d, m.o.MaxLockout)
}

// match finds the step of a TOTP code with the secret from the vault.
func (m *Manager) match(ctx context.Context, code Code, now time.Time) (int64, bool, error) {
	var step int64
	var ok bool
	err := m.o.Secrets.WithCredential(ctx, SecretName, func(c *vault.Credential) error {
		v, err := c.Field(SecretField)
		if err != nil {
			return err
		}
		step, ok, err = matchStep(v.Reveal(), code, now)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("mfa: open the TOTP secret: %w", err)
	}
	return step, ok, nil
}

// recoveryDigest is HMAC-SHA256 of a recovery code under a key derived
// from the vault.
func (m *Manager) recoveryDigest(c Code) ([]byte, error) {
	k, err := m.o.Secrets.DeriveKey(recoveryKeyPurpose)
	if err != nil {
		return nil, fmt.Errorf("mfa: recovery key: %w", err)
	}
	defer k.Wipe()
	h := hmac.New(sha256.New, k.Reveal())
	h.Write([]byte("keystile mfa recovery code\x00"))
	h.Write([]byte(c.v))
	return h.Sum(nil), nil
}

// parseRecoveryCodes checks a new set of recovery codes and returns their
// digests.
func (m *Manager) recoveryDigests(codes []string) ([][]byte, error) {
	if len(codes) < MinRecoveryCodes || len(codes) > MaxRecoveryCodes {
		return nil, fmt.Errorf("%w: want %d to %d recovery codes, got %d", ErrInvalidInput, MinRecoveryCodes, MaxRecoveryCodes, len(codes))
	}
	seen := map[string]bool{}
	out := make([][]byte, 0, len(codes))
	for i, s := range codes {
		c, err := ParseCode(s)
		if err != nil || c.kind != KindRecovery {
			return nil, fmt.Errorf("%w: recovery code %d is not xxxx-xxxx-xxxx", ErrInvalidInput, i+1)
		}
		if seen[c.v] {
			return nil, fmt.Errorf("%w: recovery code %d is repeated", ErrInvalidInput, i+1)
		}
		seen[c.v] = true
		d, err := m.recoveryDigest(c)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// BeginEnrollment stores a new TOTP secret (base32; the vault takes and
// wipes it) and the recovery codes' digests, waiting for
// ConfirmEnrollment. It replaces an enrolment still pending and refuses
// (ErrAlreadyEnrolled) while one is active. The failure count and any
// lockout carry over.
func (m *Manager) BeginEnrollment(ctx context.Context, secretB32 secret.Value, recovery []string, at Attempt) error {
	defer secretB32.Wipe()
	if err := checkSecret(secretB32); err != nil {
		return err
	}
	digests, err := m.recoveryDigests(recovery)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("mfa: load state: %w", err)
	}
	if st.State == StateActive {
		m.event(ctx, at, "enroll", audit.Deny, "mfa.already_enrolled", http.StatusConflict, "")
		return ErrAlreadyEnrolled
	}
	if err := m.o.Secrets.Delete(ctx, SecretName); err != nil && !errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("mfa: remove the pending secret: %w", err)
	}
	if _, err := m.o.Secrets.Set(ctx, SecretName, map[string]secret.Value{SecretField: secretB32}, vault.SetOptions{RotationDays: secretRotationDays}); err != nil {
		return fmt.Errorf("mfa: store the TOTP secret: %w", err)
	}
	now := m.now()
	if _, err := m.o.Store.Update(ctx, func(s *State) error {
		if s.State == StateActive {
			return ErrAlreadyEnrolled
		}
		*s = State{State: StatePending, CreatedAt: now, Failures: s.Failures, LastFailure: s.LastFailure, LockedUntil: s.LockedUntil}
		return nil
	}); err != nil {
		return fmt.Errorf("mfa: begin enrolment: %w", err)
	}
	if err := m.o.Store.SetRecoveryCodes(ctx, digests); err != nil {
		return fmt.Errorf("mfa: store recovery codes: %w", err)
	}
	m.event(ctx, at, "enroll", audit.Allow, "mfa.pending", http.StatusOK, fmt.Sprintf("TOTP secret stored; %d recovery codes; waiting for a first code", len(digests)))
	return nil
}

// ConfirmEnrollment activates a pending enrolment with a first good TOTP
// code; from then on sensitive admin actions need a second factor.
func (m *Manager) ConfirmEnrollment(ctx context.Context, raw string, at Attempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("mfa: load state: %w", err)
	}
	switch st.State {
	case StateActive:
		return ErrAlreadyEnrolled
	case StatePending:
	default:
		return ErrNoPendingEnrollment
	}
	now := m.now()
	if now.Before(st.LockedUntil) {
		m.event(ctx, at, "enroll", audit.Deny, "mfa.locked", http.StatusTooManyRequests, "locked after wrong codes; the code was not checked")
		return &LockedError{Until: st.LockedUntil}
	}
	code, err := ParseCode(raw)
	if err != nil || code.kind != KindTOTP {
		return m.failLocked(ctx, at, "enroll", "mfa.malformed_code", ErrMalformedCode)
	}
	step, ok, err := m.match(ctx, code, now)
	if err != nil {
		return err
	}
	if !ok {
		return m.failLocked(ctx, at, "enroll", "mfa.invalid_code", ErrInvalidCode)
	}
	if _, err := m.o.Store.Update(ctx, func(s *State) error {
		if s.State != StatePending {
			return ErrNoPendingEnrollment
		}
		s.State, s.EnrolledAt, s.LastStep, s.Failures, s.LockedUntil = StateActive, now, step, 0, time.Time{}
		return nil
	}); err != nil {
		return fmt.Errorf("mfa: confirm enrolment: %w", err)
	}
	m.event(ctx, at, "enroll", audit.Allow, "mfa.enrolled", http.StatusOK, "second factor active")
	return nil
}

// Reset removes the enrolment: state, recovery codes, the TOTP secret
// (crypto-shredded with its vault credential) and every session. The
// caller has authorised it (Authorize for "mfa.reset", or the offline
// break-glass path).
func (m *Manager) Reset(ctx context.Context, at Attempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("mfa: load state: %w", err)
	}
	if st.State == "" {
		return ErrNotEnrolled
	}
	if _, err := m.o.Store.Update(ctx, func(s *State) error {
		*s = State{}
		return nil
	}); err != nil {
		return fmt.Errorf("mfa: reset: %w", err)
	}
	if err := m.o.Secrets.Delete(ctx, SecretName); err != nil && !errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("mfa: reset: remove the TOTP secret: %w", err)
	}
	clear(m.sessions)
	m.event(ctx, at, "reset", audit.Allow, "mfa.reset", http.StatusOK, "enrolment, recovery codes, secret and sessions removed")
	return nil
}

// ReplaceRecoveryCodes replaces every recovery code of the active
// enrolment; the caller has authorised it.
func (m *Manager) ReplaceRecoveryCodes(ctx context.Context, recovery []string, at Attempt) error {
	digests, err := m.recoveryDigests(recovery)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.o.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("mfa: load state: %w", err)
	}
	if st.State != StateActive {
		return ErrNotEnrolled
	}
	if err := m.o.Store.SetRecoveryCodes(ctx, digests); err != nil {
		return fmt.Errorf("mfa: store recovery codes: %w", err)
	}
	m.event(ctx, at, "recovery_codes", audit.Allow, "mfa.recovery_codes_replaced", http.StatusOK, fmt.Sprintf("%d new recovery codes; the old ones no longer work", len(digests)))
	return nil
}

// event audits and logs one MFA event. detail never holds a secret.
func (m *Manager) event(ctx context.Context, at Attempt, op, decision, rule string, status int, detail string) {
	if at.Action != "" {
		if detail != "" {
			detail = "action " + at.Action + ": " + detail
		} else {
			detail = "action " + at.Action
		}
	}
	m.audit.Record(ctx, audit.Event{Time: m.now(), RequestID: at.RequestID, Source: string(at.Principal), Method: at.Method,
		Path: at.Path, Operation: "admin.mfa." + op, Decision: decision, Rule: rule, Status: status, Error: detail})
	lvl := slog.LevelInfo
	if decision != audit.Allow {
		lvl = slog.LevelWarn
	}
	m.log.LogAttrs(ctx, lvl, "mfa: "+op, slog.String("decision", decision), slog.String("rule", rule),
		slog.String("principal", string(at.Principal)), slog.String("action", at.Action), slog.String("request_id", at.RequestID),
		slog.String("detail", detail))
}
