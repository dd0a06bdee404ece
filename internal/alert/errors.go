package alert

import (
	"errors"
	"fmt"
	"time"
)

// Errors callers branch on.
var (
	// ErrClosed is returned by Test and Reconfigure after Close.
	ErrClosed = errors.New("alert: dispatcher closed")
	// ErrUnknownSink is returned by Test for a sink name not configured.
	ErrUnknownSink = errors.New("alert: no such sink")
	// ErrDigestFull is returned by a DigestStore that holds its maximum of
	// pending items for a sink; the alert is then counted as dropped.
	ErrDigestFull = errors.New("alert: digest store full for this sink")
)

// DeliveryError is a failed delivery, as a sink reports it. The
// Dispatcher retries it unless Permanent, waiting at least RetryAfter
// (capped by the retry policy) when the sink asked for a delay.
type DeliveryError struct {
	// Step names what failed: "post", "answer", "smtp starttls", ...
	Step string
	// Status is the HTTP status or SMTP reply code; 0 when there was no
	// answer.
	Status int
	// RetryAfter is the delay the sink asked for (HTTP Retry-After,
	// Telegram's retry_after); 0 if none.
	RetryAfter time.Duration
	// Permanent marks failures that retrying cannot fix (a 4xx answer
	// other than 408/429, a refused configuration, no STARTTLS).
	Permanent bool
	// Err is the cause. It never holds the request URL or a credential.
	Err error
}

func (e *DeliveryError) Error() string {
	s := e.Step
	if e.Status != 0 {
		s += fmt.Sprintf(" (status %d)", e.Status)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent returns a permanent DeliveryError for step.
func Permanent(step string, err error) error {
	return &DeliveryError{Step: step, Permanent: true, Err: err}
}

// Temporary returns a retryable DeliveryError for step.
func Temporary(step string, err error) error {
	return &DeliveryError{Step: step, Err: err}
}
