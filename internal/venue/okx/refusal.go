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
	b, _ := json.Marshal(struct {
		Code string `json:"code"`
		Msg  string `json:"msg"`
		Data []any  `json:"data"`
	}{refusalCodes().Code(r), r.Detail(), []any{}}) // #nosec G104 -- strings always marshal
	return r.Status, "application/json", b
}

// refusalCodes are OKX's codes for keystile's refusals.
func refusalCodes() venue.RefusalCodes {
	return venue.RefusalCodes{Unavailable: "50001", Auth: "50114", Denied: "51009", RateLimit: "50011", BadRequest: "51000", UnknownOutcome: "50004"}
}

var _ venue.ErrorShaper = (*Venue)(nil)
