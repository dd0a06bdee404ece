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
	code := 10016
	switch r.Kind() {
	case venue.RefusedAuth:
		code = 10003
	case venue.RefusedDenied:
		code = 10005
	case venue.RefusedRateLimit:
		code = 10006
	case venue.RefusedBadRequest:
		code = 10001
	case venue.RefusedUnknownOutcome:
		code = 10000
	case venue.RefusedUnavailable:
	}
	b, _ := json.Marshal(struct {
		RetCode    int      `json:"retCode"`
		RetMsg     string   `json:"retMsg"`
		Result     struct{} `json:"result"`
		RetExtInfo struct{} `json:"retExtInfo"`
		Time       int64    `json:"time"`
	}{RetCode: code, RetMsg: r.Detail(), Time: v.now().UnixMilli()}) // #nosec G104 -- a struct of scalars always marshals
	return r.Status, "application/json", b
}

var _ venue.ErrorShaper = (*Venue)(nil)
