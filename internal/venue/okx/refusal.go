package okx

import (
	"encoding/json"

	"github.com/keystile/keystile/internal/venue"
)

// ShapeRefusal implements venue.ErrorShaper: OKX's
// {"code":"<code>","msg":"...","data":[]} with codes from OKX's error code
// list: 50114 invalid authorization, 51009 "order placement function is
// blocked by the platform" for a keystile denial, 50011 rate limit,
// 51000 parameter error, 50004 endpoint request timeout (outcome unknown),
// 50001 service temporarily unavailable.
func (v *Venue) ShapeRefusal(r venue.Refusal) (int, string, []byte) {
	code := "50001"
	switch r.Kind() {
	case venue.RefusedAuth:
		code = "50114"
	case venue.RefusedDenied:
		code = "51009"
	case venue.RefusedRateLimit:
		code = "50011"
	case venue.RefusedBadRequest:
		code = "51000"
	case venue.RefusedUnknownOutcome:
		code = "50004"
	case venue.RefusedUnavailable:
	}
	b, _ := json.Marshal(struct {
		Code string `json:"code"`
		Msg  string `json:"msg"`
		Data []any  `json:"data"`
	}{code, r.Detail(), []any{}}) // #nosec G104 -- strings always marshal
	return r.Status, "application/json", b
}

var _ venue.ErrorShaper = (*Venue)(nil)
