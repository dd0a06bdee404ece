package binance

import (
	"encoding/json"

	"github.com/keystile/keystile/internal/venue"
)

// Binance error codes keystile answers its refusals with (Binance spot
// "Error codes"): SDKs map them to their usual exceptions.
const (
	codeUnknown         = -1000 // UNKNOWN
	codeDisconnected    = -1001 // DISCONNECTED: internal error; unable to process your request
	codeTooManyRequests = -1003 // TOO_MANY_REQUESTS
	codeTimeout         = -1007 // TIMEOUT: send status unknown; execution status unknown
	codeMandatoryParam  = -1102 // MANDATORY_PARAM_EMPTY_OR_MALFORMED
	codeRejected        = -2010 // NEW_ORDER_REJECTED
	codeRejectedAPIKey  = -2015 // REJECTED_MBX_KEY: invalid API-key, IP, or permissions for action
)

// ShapeRefusal implements venue.ErrorShaper: Binance's {"code","msg"}
// with keystile's status.
func (v *Venue) ShapeRefusal(r venue.Refusal) (int, string, []byte) {
	code := codeUnknown
	switch r.Kind() {
	case venue.RefusedAuth:
		code = codeRejectedAPIKey
	case venue.RefusedDenied:
		code = codeRejected
	case venue.RefusedRateLimit:
		code = codeTooManyRequests
	case venue.RefusedBadRequest:
		code = codeMandatoryParam
	case venue.RefusedUnknownOutcome:
		code = codeTimeout
	case venue.RefusedUnavailable:
		code = codeDisconnected
	}
	b, _ := json.Marshal(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{code, r.Detail()}) // #nosec G104 -- a struct of an int and a string always marshals
	return r.Status, "application/json", b
}

var _ venue.ErrorShaper = (*Venue)(nil)
