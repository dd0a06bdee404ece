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
	d := r.Detail()
	b, _ := json.Marshal(struct {
		Error        string `json:"error"`
		ErrorDetails string `json:"error_details"`
		Message      string `json:"message"`
	}{refusalCodes().Code(r), d, d}) // #nosec G104 -- strings always marshal
	return r.Status, "application/json", b
}

// refusalCodes are Advanced Trade's status names for keystile's refusals.
func refusalCodes() venue.RefusalCodes {
	return venue.RefusalCodes{Unavailable: "UNAVAILABLE", Auth: "UNAUTHENTICATED", Denied: "PERMISSION_DENIED",
		RateLimit: "RESOURCE_EXHAUSTED", BadRequest: "INVALID_ARGUMENT", UnknownOutcome: "DEADLINE_EXCEEDED"}
}

var _ venue.ErrorShaper = (*Venue)(nil)
