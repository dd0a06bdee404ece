package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/mfa"
)

// apiError is a refusal or failure of the admin API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, e.Code, e.Message)
}

// mfaRefusal reports whether the admin API refused for want of a (good)
// second factor.
func mfaRefusal(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case "mfa_required", "mfa_session_invalid", "mfa_invalid", "mfa_replay", "mfa_locked":
		return true
	}
	return false
}

// recorder is a minimal in-memory http.ResponseWriter for in-process
// admin requests.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > admin.MaxBody*4 {
		return 0, errors.New("console: admin answer too large")
	}
	return r.body.Write(b)
}

// Flush implements http.Flusher (nothing to flush in memory).
func (r *recorder) Flush() {}

var (
	_ http.ResponseWriter = (*recorder)(nil)
	_ http.Flusher        = (*recorder)(nil)
)

// call sends one admin API request in process as the session's
// principal, with its admin MFA session and, if given, a code; out
// receives the JSON answer. The request's id and time are the admin
// API's; its audit record is the admin API's.
func (c *Console) call(ctx context.Context, s *session, method, path string, in, out any, code string) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return fmt.Errorf("console: encode admin request: %w", err)
		}
	}
	var p mfa.Principal = "console:-"
	if s != nil {
		p = s.principal
	}
	req, err := http.NewRequestWithContext(admin.WithPrincipal(ctx, p), method, path, &body)
	if err != nil {
		return fmt.Errorf("console: admin request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s != nil {
		if v, _ := s.mfa(); v.Len() > 0 {
			req.Header.Set(admin.HeaderMFASession, string(v.Reveal()))
		}
	}
	if code != "" {
		req.Header.Set(admin.HeaderMFACode, code)
	}
	rec := &recorder{h: http.Header{}}
	c.o.Admin.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 300 {
		var eb admin.ErrorBody
		_ = json.Unmarshal(rec.body.Bytes(), &eb)
		return &apiError{Status: rec.status, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out != nil && rec.status != http.StatusNoContent {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("console: decode admin answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}
