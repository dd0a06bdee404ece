package binance

import (
	"encoding/json"

	"github.com/keystile/keystile/internal/venue"
)

// Binance error codes keystile answers its refusals with (Binance spot
// "Error codes"): SDKs map them to their usual exceptions.
const (
	codeDisconnected    = "-1001" // DISCONNECTED: internal error; unable to process your request
	codeTooManyRequests = "-1003" // TOO_MANY_REQUESTS
	codeTimeout         = "-1007" // TIMEOUT: send status unknown; execution status unknown
	codeMandatoryParam  = "-1102" // MANDATORY_PARAM_EMPTY_OR_MALFORMED
	codeRejected        = "-2010" // NEW_ORDER_REJECTED
	codeRejectedAPIKey  = "-2015" // REJECTED_MBX_KEY: invalid API-key, IP, or permissions for action
)

// ShapeRefusal implements venue.ErrorShaper: Binance's {"code","msg"}
// with keystile's status.
func (v *Venue) ShapeRefusal(r venue.Refusal) (int, string, []byte) {
	b, _ := json.Marshal(struct {
		Code json.Number `json:"code"`
		Msg  string      `json:"msg"`
	}{json.Number(refusalCodes().Code(r)), r.Detail()}) // #nosec G104 -- a struct of a number and a string always marshals
	return r.Status, "application/json", b
}

// refusalCodes are Binance's codes for keystile's refusals.
func refusalCodes() venue.RefusalCodes {
	return venue.RefusalCodes{Unavailable: codeDisconnected, Auth: codeRejectedAPIKey, Denied: codeRejected,
		RateLimit: codeTooManyRequests, BadRequest: codeMandatoryParam, UnknownOutcome: codeTimeout}
}

var _ venue.ErrorShaper = (*Venue)(nil)
