package upstream

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidOptions wraps every Options and RetryPolicy validation failure.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrHostNotAllowed: the URL host, Host header or dialled address is not
	// in Options.Hosts. Final: never retried.
	ErrHostNotAllowed = errors.New("host not allowed")
	// ErrPlainHTTP: a plain http:// request outside the loopback sandbox
	// exception. Final: never retried.
	ErrPlainHTTP = errors.New("plain http refused")
	// ErrSchemeNotAllowed: a URL scheme other than https (or http for the
	// sandbox). Final.
	ErrSchemeNotAllowed = errors.New("url scheme not allowed")
	// ErrBodyNotReplayable: a retry or session refresh was needed but the
	// request body cannot be produced again (req.GetBody is nil).
	ErrBodyNotReplayable = errors.New("request body cannot be replayed")
	// ErrRedirectNotAllowed: Transport.Client refused a redirect to another
	// origin, or one that would re-send a request body.
	ErrRedirectNotAllowed = errors.New("redirect not allowed")
	// ErrSessionRefresh: RetryPolicy.RefreshSession failed.
	ErrSessionRefresh = errors.New("session refresh failed")
	// ErrRefused: a RoundTripper in front of the network refused to send
	// the request at all (the kill switch). Nothing left; final: never
	// retried.
	ErrRefused = errors.New("request refused before sending")
)

// UnknownOutcomeError reports that request bytes may have reached the venue
// before the exchange failed (reset, timeout, closed connection). The venue
// may or may not have acted on the request. A write that fails this way is
// never re-sent; the gateway should answer 504 and leave it to the bot to
// query the order state.
type UnknownOutcomeError struct {
	Method string // request method
	Host   string // URL host (never the path or query)
	Err    error  // what went wrong after the bytes left
}

func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("upstream: %s %s: outcome unknown, request may have been received: %v", e.Method, e.Host, e.Err)
}

func (e *UnknownOutcomeError) Unwrap() error { return e.Err }
