package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

// PathMFA is the prefix of the MFA endpoints.
const PathMFA = "/v1/mfa"

// Headers carrying the second factor of a gated request. Neither is ever
// logged.
const (
	HeaderMFACode    = "Keystile-MFA-Code"
	HeaderMFASession = "Keystile-MFA-Session"
)

// MFAGate authorises sensitive actions (internal/mfa.Manager).
type MFAGate interface {
	// Authorize lets the request through (nil) or says why not: the mfa
	// package's ErrRequired, ErrSessionInvalid, ErrInvalidCode,
	// ErrMalformedCode, ErrReplay, *LockedError; other errors mean the
	// check itself failed.
	Authorize(ctx context.Context, c mfa.Credentials, at mfa.Attempt) (mfa.Method, error)
	Status(ctx context.Context) (mfa.Status, error)
	SessionExpiry(tok string, p mfa.Principal) (time.Time, bool)
	SessionTTL() time.Duration
}

// MFAEnrolment enrols, replaces and removes the second factor.
type MFAEnrolment interface {
	BeginEnrollment(ctx context.Context, secretB32 secret.Value, recovery []string, at mfa.Attempt) error
	ConfirmEnrollment(ctx context.Context, code string, at mfa.Attempt) error
	ReplaceRecoveryCodes(ctx context.Context, recovery []string, at mfa.Attempt) error
	Reset(ctx context.Context, at mfa.Attempt) error
}

// MFASessions opens and closes admin sessions.
type MFASessions interface {
	Login(ctx context.Context, code string, at mfa.Attempt) (mfa.Session, error)
	Logout(ctx context.Context, tok string, at mfa.Attempt) bool
}

// MFA is the admin second factor as the admin API uses it.
type MFA interface {
	MFAGate
	MFAEnrolment
	MFASessions
}

// MFAStatus is the answer of GET /v1/mfa and of the enrolment steps: no
// secret, no code.
type MFAStatus struct {
	// State is none, pending or active. While active, sensitive actions
	// need a second factor.
	State             string    `json:"state"`
	Issuer            string    `json:"issuer,omitempty"`
	CreatedAt         time.Time `json:"created_at,omitzero"`
	EnrolledAt        time.Time `json:"enrolled_at,omitzero"`
	RecoveryCodesLeft int       `json:"recovery_codes_left"`
	Failures          int       `json:"failures"`
	LockedUntil       time.Time `json:"locked_until,omitzero"`
	Sessions          int       `json:"sessions"`
	SessionTTLSeconds int64     `json:"session_ttl_seconds"`
	// SessionExpires is when the caller's own session (the one it
	// presented) ends; zero if it presented none that is live.
	SessionExpires time.Time `json:"session_expires,omitzero"`
	// Principal is who the server takes the caller for.
	Principal string `json:"principal"`
}

// MFAEnrollRequest is the body of POST /v1/mfa/enroll: a TOTP secret made
// by the client (base32 text, bytes in JSON) and its recovery codes. The
// server keeps the secret in the vault and the codes as digests.
type MFAEnrollRequest struct {
	Secret        []byte   `json:"secret"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// MFACodeRequest is the body of POST /v1/mfa/enroll/confirm and
// POST /v1/mfa/login.
type MFACodeRequest struct {
	Code string `json:"code"`
}

// MFARecoveryCodesRequest is the body of POST /v1/mfa/recovery-codes.
type MFARecoveryCodesRequest struct {
	RecoveryCodes []string `json:"recovery_codes"`
}

// MFASessionGrant is the answer of POST /v1/mfa/login.
type MFASessionGrant struct {
	Session   string    `json:"session"`
	ExpiresAt time.Time `json:"expires_at"`
}

type principalKey struct{}

type gateKey struct{}

// PrincipalOf names the caller of an admin request: "token:NAME" on the
// TCP listener, else "uid:N" of the socket peer.
func PrincipalOf(ctx context.Context) mfa.Principal {
	if p, ok := ctx.Value(principalKey{}).(mfa.Principal); ok {
		return p
	}
	return mfa.Principal("uid:" + strconv.Itoa(PeerUID(ctx)))
}

// gate is the MFA gate of one server, reachable from handlers through
// the request (RequireMFA).
type gate struct{ s *Server }

// RequireMFA is the admin API's one second-factor gate. Every sensitive
// handler goes through it: MFAAlways routes from the gate middleware,
// MFAConditional handlers by calling it when the request asks for
// something sensitive. While an enrolment is active, it lets the request
// through with a live admin session of the same principal
// (Keystile-MFA-Session) or a good TOTP or recovery code
// (Keystile-MFA-Code); otherwise it answers (401 mfa_required,
// mfa_session_invalid, mfa_invalid, mfa_replay; 429 mfa_locked; 503) and
// returns false. Outside the gate middleware it refuses (fail closed).
func RequireMFA(w http.ResponseWriter, r *http.Request, action string) bool {
	g, ok := r.Context().Value(gateKey{}).(*gate)
	if !ok {
		WriteError(w, http.StatusInternalServerError, "mfa_gate_missing", "this admin route is not behind the second-factor gate")
		return false
	}
	return g.require(w, r, action)
}

func (g *gate) require(w http.ResponseWriter, r *http.Request, action string) bool {
	if g.s.o.MFA == nil {
		return true // no second factor configured: nothing can be enrolled
	}
	at := attempt(r, action)
	_, err := g.s.o.MFA.Authorize(r.Context(), mfa.Credentials{Session: r.Header.Get(HeaderMFASession), Code: r.Header.Get(HeaderMFACode)}, at)
	if err == nil {
		return true
	}
	g.s.mfaError(w, r, action, err)
	return false
}

// attempt describes the request for the audit trail.
func attempt(r *http.Request, action string) mfa.Attempt {
	return mfa.Attempt{Principal: PrincipalOf(r.Context()), Action: action, RequestID: requestID(r), Method: r.Method, Path: r.URL.Path}
}

type reqIDKey struct{}

// requestID is the admin request's id ("adm_" + 16 hex digits), made once
// per request.
func requestID(r *http.Request) string {
	if p, ok := r.Context().Value(reqIDKey{}).(*string); ok && *p != "" {
		return *p
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := "adm_" + hex.EncodeToString(b)
	if p, ok := r.Context().Value(reqIDKey{}).(*string); ok {
		*p = id
	}
	return id
}

// mfaError answers a refused or failed second-factor check with a fixed
// message.
func (s *Server) mfaError(w http.ResponseWriter, r *http.Request, action string, err error) {
	w.Header().Set("Keystile-Request-Id", requestID(r))
	var le *mfa.LockedError
	switch {
	case errors.Is(err, mfa.ErrRequired):
		WriteError(w, http.StatusUnauthorized, "mfa_required",
			fmt.Sprintf("%s needs a second factor: run `keystile mfa login` first, or pass --totp CODE (env KEYSTILE_TOTP)", action))
	case errors.Is(err, mfa.ErrSessionInvalid):
		WriteError(w, http.StatusUnauthorized, "mfa_session_invalid", "the admin session has expired or is not valid for this caller: run `keystile mfa login`")
	case errors.Is(err, mfa.ErrReplay):
		WriteError(w, http.StatusUnauthorized, "mfa_replay", "this code was already used: wait for the next one")
	case errors.Is(err, mfa.ErrInvalidCode), errors.Is(err, mfa.ErrMalformedCode):
		WriteError(w, http.StatusUnauthorized, "mfa_invalid", "the code is not valid")
	case errors.As(err, &le):
		secs := int64(time.Until(le.Until).Seconds()) + 1
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		WriteError(w, http.StatusTooManyRequests, "mfa_locked",
			"too many wrong codes: second-factor checks are locked until "+le.Until.UTC().Format(time.RFC3339))
	case errors.Is(err, mfa.ErrNotEnrolled):
		WriteError(w, http.StatusConflict, "not_enrolled", "no second factor is enrolled (keystile mfa enroll)")
	case errors.Is(err, mfa.ErrAlreadyEnrolled):
		WriteError(w, http.StatusConflict, "already_enrolled", "a second factor is already enrolled: reset it first (keystile mfa reset)")
	case errors.Is(err, mfa.ErrNoPendingEnrollment):
		WriteError(w, http.StatusConflict, "no_pending_enrollment", "no enrolment is waiting for confirmation (keystile mfa enroll)")
	case errors.Is(err, mfa.ErrInvalidInput):
		WriteError(w, http.StatusBadRequest, "invalid", err.Error())
	default:
		s.log.Error("admin: second-factor check failed", "action", action, "path", r.URL.Path, "request_id", requestID(r), "err", err)
		WriteError(w, http.StatusServiceUnavailable, "mfa_unavailable", "the second-factor check failed; nothing was done (see the server log)")
	}
}

// mfaGate wraps the mux: it classifies each request's route (MFARoutes),
// refuses unclassified routes, and runs RequireMFA before MFAAlways
// handlers. Handlers reach the gate through the request (RequireMFA).
func (s *Server) mfaGate(mux *http.ServeMux) http.Handler {
	routes := MFARoutes()
	g := &gate{s: s}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := ""
		ctx := context.WithValue(r.Context(), gateKey{}, g)
		r = r.WithContext(context.WithValue(ctx, reqIDKey{}, &id))
		_, pattern := mux.Handler(r)
		noteRoute(r, pattern)
		if pattern == "" { // not found, wrong method or a redirect: the mux answers
			mux.ServeHTTP(w, r)
			return
		}
		rt, ok := routes[pattern]
		if !ok {
			s.log.Error("admin: route has no MFA classification; refusing it (add it to admin.MFARoutes)", "route", pattern)
			WriteError(w, http.StatusInternalServerError, "unclassified_route", "this admin route has no second-factor classification")
			return
		}
		w, r, done := s.auditAction(w, r, pattern, rt)
		defer done()
		if rt.Class == MFAAlways && !g.require(w, r, rt.Action) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// mfaRoutes registers the MFA endpoints.
func (s *Server) mfaRoutes(mux *http.ServeMux) {
	m := s.o.MFA
	unavailable := func(w http.ResponseWriter) bool {
		if m == nil {
			WriteError(w, http.StatusNotImplemented, "mfa_unavailable", "this server has no second factor configured")
			return true
		}
		return false
	}
	status := func(w http.ResponseWriter, r *http.Request) {
		st, err := m.Status(r.Context())
		if err != nil {
			s.mfaError(w, r, "mfa.status", err)
			return
		}
		out := MFAStatus{State: st.State, Issuer: s.o.MFAIssuer, CreatedAt: st.CreatedAt, EnrolledAt: st.EnrolledAt,
			RecoveryCodesLeft: st.RecoveryCodesLeft, Failures: st.Failures, LockedUntil: st.LockedUntil, Sessions: st.Sessions,
			SessionTTLSeconds: int64(m.SessionTTL() / time.Second), Principal: string(PrincipalOf(r.Context()))}
		if tok := r.Header.Get(HeaderMFASession); tok != "" {
			if exp, ok := m.SessionExpiry(tok, PrincipalOf(r.Context())); ok {
				out.SessionExpires = exp
			}
		}
		WriteJSON(w, http.StatusOK, out)
	}
	mux.HandleFunc("GET "+PathMFA, func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		status(w, r)
	})
	mux.HandleFunc("POST "+PathMFA+"/enroll", func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		var req MFAEnrollRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		sec := secret.New(req.Secret)
		req.Secret = nil
		if err := m.BeginEnrollment(r.Context(), sec, req.RecoveryCodes, attempt(r, "mfa.enroll")); err != nil {
			s.mfaError(w, r, "mfa.enroll", err)
			return
		}
		status(w, r)
	})
	mux.HandleFunc("POST "+PathMFA+"/enroll/confirm", func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		var req MFACodeRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		if req.Code == "" {
			WriteError(w, http.StatusBadRequest, "bad_request", "a code is required")
			return
		}
		if err := m.ConfirmEnrollment(r.Context(), req.Code, attempt(r, ActionMFAConfirm)); err != nil {
			s.mfaError(w, r, ActionMFAConfirm, err)
			return
		}
		status(w, r)
	})
	mux.HandleFunc("POST "+PathMFA+"/login", func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		var req MFACodeRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		if req.Code == "" {
			WriteError(w, http.StatusBadRequest, "bad_request", "a code is required")
			return
		}
		sess, err := m.Login(r.Context(), req.Code, attempt(r, ActionMFALogin))
		if err != nil {
			s.mfaError(w, r, ActionMFALogin, err)
			return
		}
		WriteJSON(w, http.StatusOK, MFASessionGrant{Session: sess.Token, ExpiresAt: sess.Expires})
	})
	mux.HandleFunc("POST "+PathMFA+"/logout", func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		tok := r.Header.Get(HeaderMFASession)
		if tok == "" || !m.Logout(r.Context(), tok, attempt(r, "mfa.logout")) {
			WriteError(w, http.StatusNotFound, "not_found", "no such admin session of this caller")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+PathMFA+"/reset", func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		if err := m.Reset(r.Context(), attempt(r, ActionMFAReset)); err != nil {
			s.mfaError(w, r, ActionMFAReset, err)
			return
		}
		status(w, r)
	})
	mux.HandleFunc("POST "+PathMFA+"/recovery-codes", func(w http.ResponseWriter, r *http.Request) {
		if unavailable(w) {
			return
		}
		var req MFARecoveryCodesRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		if err := m.ReplaceRecoveryCodes(r.Context(), req.RecoveryCodes, attempt(r, ActionMFARecoveryCodes)); err != nil {
			s.mfaError(w, r, ActionMFARecoveryCodes, err)
			return
		}
		status(w, r)
	})
}

// reserved refuses a write or removal of a credential name the server
// keeps for itself (the TOTP secret).
func reserved(w http.ResponseWriter, name string) bool {
	if len(name) >= len(mfa.ReservedPrefix) && name[:len(mfa.ReservedPrefix)] == mfa.ReservedPrefix {
		WriteError(w, http.StatusBadRequest, "reserved", fmt.Sprintf("credential names starting with %q are keystile's own (the admin second factor: keystile mfa)", mfa.ReservedPrefix))
		return true
	}
	return false
}
