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
	b, _ := json.Marshal(struct {
		Error  []string `json:"error"`
		Result struct{} `json:"result"`
	}{Error: []string{refusalCodes().Code(r), "EGeneral:" + r.Detail()}}) // #nosec G104 -- strings always marshal
	return r.Status, "application/json", b
}

// refusalCodes are Kraken's errors for keystile's refusals.
func refusalCodes() venue.RefusalCodes {
	return venue.RefusalCodes{Unavailable: "EService:Unavailable", Auth: "EAPI:Invalid key", Denied: "EGeneral:Permission denied",
		RateLimit: "EAPI:Rate limit exceeded", BadRequest: "EGeneral:Invalid arguments", UnknownOutcome: "EService:Deadline elapsed"}
}

var _ venue.ErrorShaper = (*Venue)(nil)
