package bybit

import (
	"encoding/json"

	"github.com/keystile/keystile/internal/venue"
)

// ShapeRefusal implements venue.ErrorShaper: Bybit v5's
// {"retCode":N,"retMsg":"...","result":{},"retExtInfo":{},"time":0} with
// Bybit's codes: 10003 invalid API key, 10005 permission denied, 10006
// too many visits, 10001 parameter error, 10000 server timeout (outcome
// unknown), 10016 server error.
func (v *Venue) ShapeRefusal(r venue.Refusal) (int, string, []byte) {
	b, _ := json.Marshal(struct {
		RetCode    json.Number `json:"retCode"`
		RetMsg     string      `json:"retMsg"`
		Result     struct{}    `json:"result"`
		RetExtInfo struct{}    `json:"retExtInfo"`
		Time       int64       `json:"time"`
	}{RetCode: json.Number(refusalCodes().Code(r)), RetMsg: r.Detail(), Time: v.now().UnixMilli()}) // #nosec G104 -- a struct of scalars always marshals
	return r.Status, "application/json", b
}

// refusalCodes are Bybit's codes for keystile's refusals.
func refusalCodes() venue.RefusalCodes {
	return venue.RefusalCodes{Unavailable: "10016", Auth: "10003", Denied: "10005", RateLimit: "10006", BadRequest: "10001", UnknownOutcome: "10000"}
}

var _ venue.ErrorShaper = (*Venue)(nil)
