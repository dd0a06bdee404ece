package kraken

import (
	"encoding/json"

	"github.com/keystile/keystile/internal/venue"
)

// ShapeRefusal implements venue.ErrorShaper: Kraken's
// {"error":["<severity><category>:<message>", ...],"result":{}}. The first
// entry is the Kraken error an SDK matches (EAPI:Invalid key,
// EGeneral:Permission denied, EAPI:Rate limit exceeded, EGeneral:Invalid
// arguments, EService:Deadline elapsed, EService:Unavailable); the second
// carries keystile's detail.
func (v *Venue) ShapeRefusal(r venue.Refusal) (int, string, []byte) {
	first := "EService:Unavailable"
	switch r.Kind() {
	case venue.RefusedAuth:
		first = "EAPI:Invalid key"
	case venue.RefusedDenied:
		first = "EGeneral:Permission denied"
	case venue.RefusedRateLimit:
		first = "EAPI:Rate limit exceeded"
	case venue.RefusedBadRequest:
		first = "EGeneral:Invalid arguments"
	case venue.RefusedUnknownOutcome:
		first = "EService:Deadline elapsed"
	case venue.RefusedUnavailable:
	}
	b, _ := json.Marshal(struct {
		Error  []string `json:"error"`
		Result struct{} `json:"result"`
	}{Error: []string{first, "EGeneral:" + r.Detail()}}) // #nosec G104 -- strings always marshal
	return r.Status, "application/json", b
}

var _ venue.ErrorShaper = (*Venue)(nil)
