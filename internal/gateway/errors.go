package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
)

// publicError is what a bot is told: a fixed message per code.
type publicError struct {
	Status  int
	Code    string
	Message string
}

var (
	errNoToken        = publicError{http.StatusUnauthorized, "unauthorized", "missing or invalid keystile token"}
	errBadToken       = publicError{http.StatusUnauthorized, "unauthorized", "missing or invalid keystile token"}
	errTokenForbidden = publicError{http.StatusForbidden, "forbidden", "this keystile token may not make this request"}
	errUnknownVenue   = publicError{http.StatusNotFound, "unknown_venue", "no such venue on this gateway"}
	errBadPath        = publicError{http.StatusBadRequest, "bad_request", "malformed request path"}
	errBadRequest     = publicError{http.StatusBadRequest, "bad_request", "malformed request"}
	errTooLarge       = publicError{http.StatusRequestEntityTooLarge, "too_large", "request body too large"}
	errDenied         = publicError{http.StatusForbidden, "denied", "request refused by keystile policy"}
	errCredential     = publicError{http.StatusServiceUnavailable, "credential_unavailable", "the venue credential is unavailable"}
	errUpstream       = publicError{http.StatusBadGateway, "upstream_error", "the venue could not be reached"}
	errUpstreamRefuse = publicError{http.StatusBadGateway, "upstream_refused", "keystile refused to contact that upstream"}
	errTimeout        = publicError{http.StatusGatewayTimeout, "upstream_timeout", "the venue did not answer in time"}
	errUnknownOutcome = publicError{http.StatusGatewayTimeout, "outcome_unknown", "the request was sent but its outcome is unknown; check before retrying"}
	errRespTooLarge   = publicError{http.StatusBadGateway, "upstream_error", "the venue's answer was too large"}
	errRateLimited    = publicError{http.StatusTooManyRequests, "rate_limited", "venue rate limit nearly reached; retry later"}
	errMethod         = publicError{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
	errThrottled      = publicError{http.StatusTooManyRequests, "throttled", "this keystile token is temporarily limited; retry later"}
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Rule      string `json:"rule,omitempty"`
	RequestID string `json:"request_id"`
}

func writeError(w http.ResponseWriter, pe publicError, rule, reqID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(HeaderError, pe.Code)
	if pe.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="keystile"`)
	}
	w.WriteHeader(pe.Status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: pe.Code, Message: pe.Message, Rule: rule, RequestID: reqID}})
}

// tokenError maps a verification refusal to its public error. Only two
// messages exist, so a caller learns nothing about which check failed.
func tokenError(err error) publicError {
	switch {
	case errors.Is(err, token.ErrFrozen), errors.Is(err, token.ErrVenue), errors.Is(err, token.ErrSource), errors.Is(err, token.ErrEnvironment):
		return errTokenForbidden
	default:
		return errBadToken
	}
}

// credentialError marks failures to open or use the venue credential.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return "gateway: venue credential: " + e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

var errResponseTooLarge = errors.New("gateway: upstream response too large")
var errUnscrubbable = errors.New("gateway: upstream response has a content encoding keystile cannot scrub")

// upstreamError maps an error from the proxy's transport.
func upstreamError(err error) publicError {
	var ce *credentialError
	var uo *upstream.UnknownOutcomeError
	switch {
	case errors.As(err, &ce):
		return errCredential
	case errors.As(err, &uo) && !safeMethod(uo.Method):
		// Only a write can have an effect the bot must check; a read that
		// timed out or was cut off is reported as such below.
		return errUnknownOutcome
	case errors.Is(err, errResponseTooLarge), errors.Is(err, errUnscrubbable):
		return errRespTooLarge
	case errors.Is(err, upstream.ErrRefused):
		return errTokenForbidden // the kill switch engaged while the request was on its way
	case errors.Is(err, upstream.ErrHostNotAllowed), errors.Is(err, upstream.ErrPlainHTTP), errors.Is(err, upstream.ErrSchemeNotAllowed):
		return errUpstreamRefuse
	case errors.Is(err, context.DeadlineExceeded):
		return errTimeout
	default:
		return errUpstream
	}
}

// safeMethod reports methods that never change venue state, for which an
// unknown outcome does not matter.
func safeMethod(m string) bool {
	switch m {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}
