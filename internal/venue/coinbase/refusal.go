package coinbase

import (
	"encoding/json"

	"github.com/keystile/keystile/internal/venue"
)

// ShapeRefusal implements venue.ErrorShaper: Advanced Trade's
// {"error":"<STATUS>","error_details":"...","message":"..."} with the
// gRPC-style status names the API answers: UNAUTHENTICATED,
// PERMISSION_DENIED, RESOURCE_EXHAUSTED, INVALID_ARGUMENT,
// DEADLINE_EXCEEDED, UNAVAILABLE.
func (v *Venue) ShapeRefusal(r venue.Refusal) (int, string, []byte) {
	status := "UNAVAILABLE"
	switch r.Kind() {
	case venue.RefusedAuth:
		status = "UNAUTHENTICATED"
	case venue.RefusedDenied:
		status = "PERMISSION_DENIED"
	case venue.RefusedRateLimit:
		status = "RESOURCE_EXHAUSTED"
	case venue.RefusedBadRequest:
		status = "INVALID_ARGUMENT"
	case venue.RefusedUnknownOutcome:
		status = "DEADLINE_EXCEEDED"
	case venue.RefusedUnavailable:
	}
	d := r.Detail()
	b, _ := json.Marshal(struct {
		Error        string `json:"error"`
		ErrorDetails string `json:"error_details"`
		Message      string `json:"message"`
	}{status, d, d}) // #nosec G104 -- strings always marshal
	return r.Status, "application/json", b
}

var _ venue.ErrorShaper = (*Venue)(nil)
