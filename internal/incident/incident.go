// Package incident builds incident reports from the audit log: a
// timeline of what was detected, contained (kill switch, freezes),
// eradicated (orders cancelled, tokens revoked) and recovered (switch
// cleared, tokens unfrozen or replaced), by whom and why, and what the
// bot did before and after it was contained — as Markdown for people and
// JSON for tools.
//
// The report is read-only over a stored log (audit.Reader). Tokens appear
// in the log only as HMACs: a report for one token is built from its
// HMAC (computed by the caller, who holds the vault), and names other
// tokens by an HMAC prefix. Nothing in the log is a secret; the report
// adds none.
package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
)

// Phases of an incident response, as the report groups levers.
const (
	PhaseDetect    = "detect"
	PhaseContain   = "contain"
	PhaseEradicate = "eradicate"
	PhaseRecover   = "recover"
	PhaseOther     = "other"
)

// Options select what a report covers.
type Options struct {
	// Since and Until bound the window (Until zero: to the end of the log).
	Since, Until time.Time
	// TokenHash restricts request records (and token levers) to one
	// token: its HMAC as stored (audit.Keys.TokenHash). "" covers every
	// token. TokenLabel is how the report names it (its public id).
	TokenHash, TokenLabel string
	// GeneratedAt is the report's time; zero means now.
	GeneratedAt time.Time
	// KeyRecords caps the request records listed per phase of the bot's
	// activity; 0 means 25.
	KeyRecords int
}

// Report is an incident report.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until,omitzero"`
	Token       string    `json:"token,omitempty"` // the token reported on; "" = every token
	// FirstSeq and LastSeq are the records read in the window.
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// Malformed counts stored records that did not decode (run
	// keystile audit verify).
	Malformed int `json:"malformed,omitempty"`
	// Actions are the levers pulled, in order.
	Actions []Action `json:"actions"`
	// ContainedAt is the time of the first containing lever (kill switch
	// engaged, token frozen) in the window, if any; requests recorded
	// after it (by sequence) are the After activity.
	ContainedAt time.Time `json:"contained_at,omitzero"`
	// Before and After are the bot's requests before and after it.
	Before Activity `json:"before"`
	After  Activity `json:"after"`
}

// Action is one lever: an action record of the audit log, or a detect
// record (a detector's finding and what it did about it).
type Action struct {
	Seq       uint64         `json:"seq"`
	Time      time.Time      `json:"time"`
	Phase     string         `json:"phase"`
	Operation string         `json:"operation"`
	Rule      string         `json:"rule,omitempty"`
	Actor     string         `json:"actor,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Venue     string         `json:"venue,omitempty"`
	Token     string         `json:"token,omitempty"` // HMAC prefix, or the label for the reported token
	Decision  string         `json:"decision,omitempty"`
	Error     string         `json:"error,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
	// Evidence is a detect record's evidence (the finding, the action's
	// target and result, observed and usual values, request ids).
	Evidence  map[string]any `json:"evidence,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
}

// Activity sums request records.
type Activity struct {
	Requests int `json:"requests"`
	Allowed  int `json:"allowed"`
	Denied   int `json:"denied"`
	Errors   int `json:"errors"`
	// Orders counts order placements the venue accepted (it named the
	// order); Notional sums their notional per currency.
	Orders   int               `json:"orders"`
	Notional map[string]string `json:"notional,omitempty"`
	// ByRule counts refusals by rule; ByVenue and ByOperation count every
	// request.
	ByRule      map[string]int `json:"by_rule,omitempty"`
	ByVenue     map[string]int `json:"by_venue,omitempty"`
	ByOperation map[string]int `json:"by_operation,omitempty"`
	Tokens      int            `json:"tokens"`
	Sources     int            `json:"sources"`
	First       time.Time      `json:"first,omitzero"`
	Last        time.Time      `json:"last,omitzero"`
	// Key are the records worth reading: order placements, refusals and
	// errors (at most Options.KeyRecords, the latest kept).
	Key []Request `json:"key,omitempty"`
	// KeyOmitted counts key records left out.
	KeyOmitted int `json:"key_omitted,omitempty"`

	notional map[string]decimal.Decimal
	tokens   map[string]bool
	sources  map[string]bool
}

// Request is one request record, as the report shows it.
type Request struct {
	Seq          uint64    `json:"seq"`
	Time         time.Time `json:"time"`
	Token        string    `json:"token,omitempty"`
	Venue        string    `json:"venue,omitempty"`
	Operation    string    `json:"operation,omitempty"`
	Method       string    `json:"method,omitempty"`
	Path         string    `json:"path,omitempty"`
	Decision     string    `json:"decision"`
	Rule         string    `json:"rule,omitempty"`
	Status       int       `json:"status"`
	Order        string    `json:"order,omitempty"` // "BTCUSDT buy 0.01@30000 (300 USDT)"
	VenueOrderID string    `json:"venue_order_id,omitempty"`
}

// ErrRange: Until is before Since.
var ErrRange = errors.New("incident: the window ends before it starts")

// Build reads r and returns the report. Intent records are skipped (each
// write also has its outcome record).
func Build(ctx context.Context, r audit.Reader, o Options) (*Report, error) {
	if !o.Until.IsZero() && o.Until.Before(o.Since) {
		return nil, ErrRange
	}
	if o.KeyRecords <= 0 {
		o.KeyRecords = 25
	}
	rep := &Report{GeneratedAt: o.GeneratedAt, Since: o.Since.UTC(), Until: o.Until.UTC(), Token: o.TokenLabel, Actions: []Action{}}
	if rep.GeneratedAt.IsZero() {
		rep.GeneratedAt = time.Now()
	}
	rep.GeneratedAt = rep.GeneratedAt.UTC()
	if rep.Token == "" && o.TokenHash != "" {
		rep.Token = short(o.TokenHash)
	}
	var reqs []audit.Record
	err := r.Scan(ctx, 1, func(rec audit.Record) error {
		if rec.Hash == "" {
			rep.Malformed++
			return nil
		}
		if rec.Time.Before(o.Since) || !o.Until.IsZero() && rec.Time.After(o.Until) {
			return nil
		}
		if rep.FirstSeq == 0 {
			rep.FirstSeq = rec.Seq
		}
		rep.LastSeq = rec.Seq
		switch rec.Kind {
		case audit.KindAction:
			if o.TokenHash != "" && rec.Token != "" && rec.Token != o.TokenHash {
				return nil // another token's lever
			}
			rep.Actions = append(rep.Actions, action(rec, o))
		case audit.KindDetect:
			if o.TokenHash != "" && rec.Token != "" && rec.Token != o.TokenHash {
				return nil // a finding about another token
			}
			rep.Actions = append(rep.Actions, detectAction(rec, o))
		case audit.KindOutcome:
			if strings.HasPrefix(rec.Operation, adminOpPrefix) {
				return nil // an admin API write, not a bot's request (its levers are action records)
			}
			if o.TokenHash == "" || rec.Token == o.TokenHash {
				reqs = append(reqs, rec)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("incident: read the audit log: %w", err)
	}
	var containedSeq uint64
	for _, a := range rep.Actions {
		if a.Phase == PhaseContain {
			rep.ContainedAt, containedSeq = a.Time, a.Seq
			break
		}
	}
	rep.Before, rep.After = newActivity(), newActivity()
	for _, rec := range reqs {
		act := &rep.Before
		if containedSeq != 0 && rec.Seq > containedSeq {
			act = &rep.After
		}
		act.add(rec, o)
	}
	rep.Before.finish(o.KeyRecords)
	rep.After.finish(o.KeyRecords)
	return rep, nil
}

// phase places an action's operation in the response's phases.
func phase(rec audit.Record) string {
	switch op := rec.Operation; {
	case op == "killswitch.engage", op == "killswitch.observed", op == "token.freeze":
		return PhaseContain
	case op == "orders.cancel_all", op == "token.revoke", op == "secret.revoke":
		return PhaseEradicate
	case op == "killswitch.clear", op == "token.unfreeze", op == "token.rotate", op == "token.create", op == "secret.rotate":
		return PhaseRecover
	case strings.HasPrefix(op, "detect."), strings.HasPrefix(rec.Rule, "detect."), strings.HasPrefix(op, "alert."):
		return PhaseDetect
	}
	return PhaseOther
}

// adminOpPrefix starts the operation of admin API writes in the log.
const adminOpPrefix = "admin."

// containing are the detector's actions that contain (when carried out).
var containing = map[string]bool{"throttle": true, "freeze": true, "freeze_venue": true, "freeze_credential": true, "kill": true} //nolint:gochecknoglobals // a constant set

// detectAction is a detect record (a finding of the anomaly detector and
// one action it took) as a lever: detected, or contained when the action
// was a throttle, a freeze or the kill switch and it was carried out.
func detectAction(rec audit.Record, o Options) Action {
	a := action(rec, o)
	a.Actor = "detect"
	var ev map[string]any
	if json.Unmarshal([]byte(rec.Evidence), &ev) == nil {
		a.Evidence = ev
	} else if rec.Evidence != "" {
		a.Evidence = map[string]any{"text": rec.Evidence}
	}
	a.Reason, _ = a.Evidence["summary"].(string)
	result, _ := a.Evidence["result"].(string)
	a.Phase = PhaseDetect
	if containing[strings.TrimPrefix(rec.Operation, "detect.")] && result == "done" {
		a.Phase = PhaseContain
	}
	return a
}

func action(rec audit.Record, o Options) Action {
	a := Action{Seq: rec.Seq, Time: rec.Time.UTC(), Phase: phase(rec), Operation: rec.Operation, Rule: rec.Rule, Actor: rec.Actor,
		Reason: rec.Reason, Venue: rec.Venue, Token: tokenName(rec.Token, o), Decision: rec.Decision, Error: rec.Error,
		RequestID: rec.RequestID}
	if rec.Detail != "" {
		var d map[string]any
		if json.Unmarshal([]byte(rec.Detail), &d) == nil {
			a.Detail = d
		} else {
			a.Detail = map[string]any{"text": rec.Detail}
		}
	}
	return a
}

func tokenName(hash string, o Options) string {
	switch {
	case hash == "":
		return ""
	case hash == o.TokenHash && o.TokenLabel != "":
		return o.TokenLabel
	}
	return short(hash)
}

// short names a token HMAC by its first 12 hex digits.
func short(hash string) string {
	if len(hash) > 12 {
		hash = hash[:12]
	}
	return "hmac:" + hash
}

func newActivity() Activity {
	return Activity{ByRule: map[string]int{}, ByVenue: map[string]int{}, ByOperation: map[string]int{},
		notional: map[string]decimal.Decimal{}, tokens: map[string]bool{}, sources: map[string]bool{}}
}

func (a *Activity) add(rec audit.Record, o Options) {
	a.Requests++
	if a.First.IsZero() {
		a.First = rec.Time.UTC()
	}
	a.Last = rec.Time.UTC()
	switch rec.Decision {
	case audit.Allow:
		a.Allowed++
	case audit.Deny:
		a.Denied++
	default:
		a.Errors++
	}
	if rec.Decision != audit.Allow && rec.Rule != "" {
		a.ByRule[rec.Rule]++
	}
	if rec.Venue != "" {
		a.ByVenue[rec.Venue]++
	}
	if rec.Operation != "" {
		a.ByOperation[rec.Operation]++
	}
	if rec.Token != "" {
		a.tokens[rec.Token] = true
	}
	if rec.Source != "" {
		a.sources[rec.Source] = true
	}
	placed := rec.Operation == "order.place" && rec.Decision == audit.Allow && rec.VenueOrderID != ""
	if placed {
		a.Orders++
		if v, cur, ok := notional(rec); ok {
			a.notional[cur] = a.notional[cur].Add(v)
		}
	}
	if placed || rec.Decision != audit.Allow || rec.Operation == "order.place" || rec.Operation == "order.cancel" ||
		strings.HasPrefix(rec.Operation, "wallet.") || strings.HasPrefix(rec.Operation, "apikey.") {
		a.Key = append(a.Key, request(rec, o))
	}
}

// notional reads "60 USDT" (the policy's computed notional).
func notional(rec audit.Record) (decimal.Decimal, string, bool) {
	f := strings.Fields(rec.Notional)
	if len(f) != 2 {
		return decimal.Decimal{}, "", false
	}
	v, err := decimal.NewFromString(f[0])
	if err != nil {
		return decimal.Decimal{}, "", false
	}
	return v, f[1], true
}

func request(rec audit.Record, o Options) Request {
	r := Request{Seq: rec.Seq, Time: rec.Time.UTC(), Token: tokenName(rec.Token, o), Venue: rec.Venue, Operation: rec.Operation,
		Method: rec.Method, Path: rec.Path, Decision: rec.Decision, Rule: rec.Rule, Status: rec.Status, VenueOrderID: rec.VenueOrderID}
	if rec.Instrument != "" {
		r.Order = strings.TrimSpace(fmt.Sprintf("%s %s %s", rec.Instrument, rec.Side, rec.Quantity))
		if rec.Price != "" {
			r.Order += "@" + rec.Price
		}
		if rec.Notional != "" {
			r.Order += " (" + rec.Notional + ")"
		}
	}
	return r
}

func (a *Activity) finish(max int) {
	a.Tokens, a.Sources = len(a.tokens), len(a.sources)
	if len(a.notional) > 0 {
		a.Notional = map[string]string{}
		for c, v := range a.notional {
			a.Notional[c] = v.String()
		}
	}
	if n := len(a.Key); n > max {
		a.KeyOmitted = n - max
		a.Key = slices.Clone(a.Key[n-max:])
	}
}

// sortedCounts returns a map's keys by count (descending), then name.
func sortedCounts(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
