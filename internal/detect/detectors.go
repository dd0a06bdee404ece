package detect

import (
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// Finding is one anomaly a detector reported. It holds no secret and no
// token, only the token's public id.
type Finding struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Detector string    `json:"detector"`
	Severity string    `json:"severity"`
	// Subject is what the finding is about, and the key of its cooldown:
	// "token:<public id>", "venue:<id>", "source:<hash>", "sources",
	// "admin" or "detector".
	Subject string `json:"subject"`
	TokenID string `json:"token_id,omitempty"`
	Venue   string `json:"venue,omitempty"`
	// Source is the triggering request's source address. It goes to
	// alerts (an operator needs it) but never into audit evidence, where
	// addresses appear only as the log's HMAC.
	Source   string   `json:"source,omitempty"`
	Summary  string   `json:"summary"`
	Evidence Evidence `json:"evidence"`
	// Actions are the actions configured for the finding's detector, in
	// the order they are taken (set when it is reported).
	Actions []string `json:"actions,omitempty"`

	trigger audit.Event // the event that raised it (order fields for the audit record)
}

// Evidence is what a finding rests on.
type Evidence struct {
	// Observed is the value that raised the finding; Baseline the learned
	// usual value it was compared with; Threshold the value it had to
	// exceed (Factor × Baseline, or the configured threshold).
	Observed  float64 `json:"observed"`
	Baseline  float64 `json:"baseline,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	Factor    float64 `json:"factor,omitempty"`
	// Unit names what is counted or measured ("orders per 1m0s",
	// "USDT", "BTCUSDT quantity", ...).
	Unit string `json:"unit,omitempty"`
	// Observations is how many values the baseline was learned from.
	Observations int64  `json:"observations,omitempty"`
	Window       string `json:"window,omitempty"`
	// Item is what was new or unusual: an instrument, a venue, an
	// operation, an hour of the week.
	Item string `json:"item,omitempty"`
	// Known is how many items (sources, instruments, ...) were known.
	Known int `json:"known,omitempty"`
	// Requests are the request ids of the triggering events (the last
	// few), to find them in the audit log.
	Requests []string `json:"requests,omitempty"`
	// Suppressed counts the same finding held back by the cooldown since
	// it was last reported.
	Suppressed int `json:"suppressed,omitempty"`
}

// Gateway rules the detector reads (see internal/gateway).
const (
	opOrderPlace   = "order.place"
	adminOpPrefix  = "admin."
	ruleTokenScope = "token.scope"
	// ruleTokenKilled: refused by the kill switch (internal/killswitch).
	ruleTokenKilled = "token.killed"
)

func isAdmin(e audit.Event) bool {
	return e.Venue == "" && strings.HasPrefix(e.Operation, adminOpPrefix)
}

// authFailure: the token was missing, malformed, unknown, or refused
// (expired, revoked, frozen, wrong venue, source or environment), or the
// source was already blocked for failing. A token the kill switch covers
// is not one: after a panic every bot's retries would otherwise raise
// auth_failures findings about a containment the operator just chose.
func authFailure(e audit.Event) bool {
	return strings.HasPrefix(e.Rule, "token.") && e.Rule != ruleTokenScope && e.Rule != ruleTokenKilled
}

// authenticated: the token verified (later checks may still refuse).
func authenticated(e audit.Event) bool { return e.TokenID != "" && !authFailure(e) }

func policyDenial(e audit.Event) bool {
	return e.Decision == audit.Deny && (strings.HasPrefix(e.Rule, "policy.") || e.Rule == ruleTokenScope || e.Rule == "venue.unmapped_route")
}

// venueError: the venue answered 5xx, or could not be reached (502/504
// without an answer).
func venueError(e audit.Event) bool {
	return e.Upstream >= 500 || (e.Upstream == 0 && e.Decision == audit.Error && (e.Status == 502 || e.Status == 504))
}

func rateLimited(e audit.Event) bool { return e.Upstream == 429 || e.Rule == "venue.rate_limit" }

// allowedOrder: an order the policy let through and that was sent (not an
// idempotent replay or a recovered outcome, which carry a rule).
func allowedOrder(e audit.Event) bool { return e.Decision == audit.Allow && e.Rule == "" }

// process analyses one event (worker goroutine).
func (d *Detector) process(e audit.Event) {
	s := d.settings.Load()
	if e.Time.IsZero() {
		e.Time = d.now()
	}
	if isAdmin(e) {
		d.adminAction(s, e)
		return
	}
	d.authBursts(s, e)
	d.venueBurst(s, e)
	if e.TokenID == "" {
		return
	}
	p := d.profileFor(tokenKey(clip(e.TokenID)), e.Time, s.MaxTokens)
	p.dirty = true
	d.sensitive(s, e)
	d.tokenBursts(s, p, e)
	d.sources(s, p, e)
	if !authenticated(e) {
		return
	}
	d.newVenue(s, p, e)
	p.Requests++
	if e.Operation == opOrderPlace {
		d.order(s, p, e)
	}
}

// tokenFinding fills the subject fields of a finding about e's token.
func tokenFinding(det string, e audit.Event, summary string, ev Evidence) Finding {
	return Finding{Time: e.Time, Detector: det, Subject: "token:" + e.TokenID, TokenID: e.TokenID, Venue: e.Venue,
		Source: e.Source, Summary: summary, Evidence: ev, trigger: e}
}

// warm reports whether a detector's warm-up is over for p at t.
func warm(ds *DetectorSettings, p *profile, n int64, t time.Time) bool {
	return n >= int64(ds.WarmupEvents) && p.age(t) >= ds.WarmupTime
}

func (d *Detector) sensitive(s *Settings, e audit.Event) {
	ds := s.hot.sensitive
	if ds == nil || e.Operation == "" {
		return
	}
	for _, g := range ds.Operations {
		if ok, _ := path.Match(g, e.Operation); ok {
			verb := "allowed"
			if e.Decision != audit.Allow {
				verb = "refused (" + e.Rule + ")"
			}
			d.report(s, tokenFinding(SensitiveOps, e, fmt.Sprintf("%s attempt on %s by token %s, %s", e.Operation, e.Venue, e.TokenID, verb),
				Evidence{Observed: 1, Item: e.Operation, Requests: appendReq(nil, e.RequestID)}))
			return
		}
	}
}

func (d *Detector) tokenBursts(s *Settings, p *profile, e audit.Event) {
	if ds := s.hot.policyDenials; ds != nil && policyDenial(e) {
		if n := p.denials.add(e.Time, ds.Window, e.RequestID); n >= ds.Threshold {
			f := tokenFinding(PolicyDenials, e, fmt.Sprintf("%d policy denials of token %s within %s (last: %s)", n, e.TokenID, ds.Window, e.Rule),
				Evidence{Observed: float64(n), Threshold: float64(ds.Threshold), Unit: "denials", Window: ds.Window.String(),
					Item: e.Rule, Requests: p.denials.reqs})
			p.denials.reset()
			d.report(s, f)
		}
	}
	if ds := s.hot.rateLimited; ds != nil && rateLimited(e) {
		if n := p.limited.add(e.Time, ds.Window, e.RequestID); n >= ds.Threshold {
			f := tokenFinding(RateLimited, e, fmt.Sprintf("%d rate-limited answers (429) for token %s on %s within %s", n, e.TokenID, e.Venue, ds.Window),
				Evidence{Observed: float64(n), Threshold: float64(ds.Threshold), Unit: "429 answers", Window: ds.Window.String(),
					Requests: p.limited.reqs})
			p.limited.reset()
			d.report(s, f)
		}
	}
}

// authBursts counts failed token checks per source and overall.
func (d *Detector) authBursts(s *Settings, e audit.Event) {
	ds := s.hot.authFailures
	if ds == nil || !authFailure(e) {
		return
	}
	src := d.sourceHash(e.Source)
	b := d.authBySrc[src]
	if b == nil {
		if len(d.authBySrc) >= maxBurstKeys {
			pruneBursts(d.authBySrc, e.Time, ds.Window)
		}
		b = &burst{}
		d.authBySrc[src] = b
	}
	if n := b.add(e.Time, ds.Window, e.RequestID); n >= ds.Threshold {
		f := Finding{Time: e.Time, Detector: AuthFailures, Subject: "source:" + src, Source: e.Source, Venue: e.Venue, TokenID: e.TokenID,
			Summary:  fmt.Sprintf("%d failed token checks from one source address within %s (last: %s)", n, ds.Window, e.Rule),
			Evidence: Evidence{Observed: float64(n), Threshold: float64(ds.Threshold), Unit: "failures from one source", Window: ds.Window.String(), Item: e.Rule, Requests: b.reqs},
			trigger:  e}
		b.reset()
		d.report(s, f)
	}
	if n := d.authAll.add(e.Time, ds.Window, e.RequestID); n >= ds.TotalThreshold {
		f := Finding{Time: e.Time, Detector: AuthFailures, Subject: "sources", Venue: e.Venue,
			Summary:  fmt.Sprintf("%d failed token checks from all sources within %s", n, ds.Window),
			Evidence: Evidence{Observed: float64(n), Threshold: float64(ds.TotalThreshold), Unit: "failures from all sources", Window: ds.Window.String(), Requests: d.authAll.reqs},
			trigger:  e}
		d.authAll.reset()
		d.report(s, f)
	}
}

// pruneBursts makes room in a full burst map: entries idle for a window
// go first; if none is idle, an arbitrary half goes (their counts restart).
func pruneBursts(m map[string]*burst, t time.Time, window time.Duration) {
	before := len(m)
	for k, b := range m {
		if t.UnixNano()-b.start > 2*int64(window) {
			delete(m, k)
		}
	}
	if len(m) < before {
		return
	}
	n := 0
	for k := range m {
		if n >= before/2 {
			break
		}
		delete(m, k)
		n++
	}
}

func (d *Detector) venueBurst(s *Settings, e audit.Event) {
	ds := s.hot.venueErrors
	if ds == nil || e.Venue == "" || !venueError(e) {
		return
	}
	v := clip(e.Venue)
	b := d.venueErrs[v]
	if b == nil {
		if len(d.venueErrs) >= maxBurstKeys {
			pruneBursts(d.venueErrs, e.Time, ds.Window)
		}
		b = &burst{}
		d.venueErrs[v] = b
	}
	if n := b.add(e.Time, ds.Window, e.RequestID); n >= ds.Threshold {
		f := Finding{Time: e.Time, Detector: VenueErrors, Subject: "venue:" + v, Venue: v,
			Summary:  fmt.Sprintf("%d venue errors (5xx or unreachable) on %s within %s", n, v, ds.Window),
			Evidence: Evidence{Observed: float64(n), Threshold: float64(ds.Threshold), Unit: "venue errors", Window: ds.Window.String(), Requests: b.reqs},
			trigger:  e}
		b.reset()
		d.report(s, f)
	}
}

// sources runs new_source and concurrent_sources. Sources are learned
// from authenticated requests only, but a refused request (say, from
// outside the token's CIDRs) from a new address is reported too.
func (d *Detector) sources(s *Settings, p *profile, e audit.Event) {
	if e.Source == "" {
		return
	}
	h := d.sourceHash(e.Source)
	if ds := s.hot.concurrent; ds != nil && p.lastSrc != "" && p.lastSrc != h && e.Time.Sub(p.lastSrcTime) <= ds.Window && e.Time.Sub(p.lastSrcTime) >= -ds.Window {
		gap := e.Time.Sub(p.lastSrcTime)
		if gap < 0 {
			gap = -gap
		}
		d.report(s, tokenFinding(ConcurrentSources, e,
			fmt.Sprintf("token %s used from two source addresses %s apart (window %s): a copy of the token may be in use elsewhere", e.TokenID, gap.Round(time.Millisecond), ds.Window),
			Evidence{Observed: gap.Seconds(), Threshold: ds.Window.Seconds(), Unit: "seconds between sources", Window: ds.Window.String(),
				Requests: appendReq(appendReq(nil, p.lastReq), e.RequestID)}))
	}
	p.lastSrc, p.lastSrcTime, p.lastReq = h, e.Time, e.RequestID
	_, known := p.Sources[h]
	if ds := s.hot.newSource; ds != nil && !known && warm(ds, p, p.Requests, e.Time) {
		d.report(s, tokenFinding(NewSource, e, fmt.Sprintf("token %s used from a source address it never used before (%d known)", e.TokenID, len(p.Sources)),
			Evidence{Observed: 1, Known: len(p.Sources), Observations: p.Requests, Requests: appendReq(nil, e.RequestID)}))
	}
	if authenticated(e) {
		if !known && len(p.Sources) >= maxSources {
			evictMin(p.Sources) // the least recently seen
		}
		p.Sources[h] = e.Time.Unix()
	}
}

func (d *Detector) newVenue(s *Settings, p *profile, e audit.Event) {
	if e.Venue == "" {
		return
	}
	v := clip(e.Venue)
	_, known := p.Venues[v]
	if ds := s.hot.newInstrument; ds != nil && !known && warm(ds, p, p.Requests, e.Time) {
		d.report(s, tokenFinding(NewInstrument, e, fmt.Sprintf("token %s made its first request to venue %s (%d venues known)", e.TokenID, v, len(p.Venues)),
			Evidence{Observed: 1, Item: "venue " + v, Known: len(p.Venues), Observations: p.Requests, Requests: appendReq(nil, e.RequestID)}))
	}
	bump(p.Venues, v, maxVenues)
}

// order runs the order detectors on an order placement (allowed or not):
// rate, notional per window, size, new instrument, hours.
func (d *Detector) order(s *Settings, p *profile, e audit.Event) {
	allowed := allowedOrder(e)
	// Order rate: every attempt counts.
	if ds := s.hot.orderRate; ds != nil {
		n := p.Rate.add(1, e.Time, ds.Window, ds.WarmupEvents, e.RequestID)
		if st := &p.Rate.Stat; !p.Rate.Fired && st.warm(ds.WarmupEvents) && warm(ds, p, st.N, e.Time) {
			usual := st.usual()
			limit := math.Max(ds.Factor*usual, float64(ds.MinCount))
			if n > ds.Factor*usual && n >= float64(ds.MinCount) {
				p.Rate.Fired = true
				d.report(s, tokenFinding(OrderRate, e, fmt.Sprintf("token %s placed %.0f orders in the current %s window; usual %.1f (limit %.1f)", e.TokenID, n, ds.Window, usual, limit),
					Evidence{Observed: n, Baseline: round(usual), Threshold: round(limit), Factor: ds.Factor, Unit: "orders per " + ds.Window.String(),
						Window: ds.Window.String(), Observations: st.N, Requests: p.Rate.Reqs}))
			}
		}
	}
	inst := clip(e.Venue + "/" + e.Instrument)
	value, unit, sizeKey, notionalKey := orderValues(e, inst)

	if ds := s.hot.orderNotional; ds != nil && allowed && notionalKey != "" {
		w := p.Notional[notionalKey]
		if w == nil {
			if len(p.Notional) >= maxCurrencies {
				evictWindow(p.Notional)
			}
			w = &windowSum{}
			p.Notional[notionalKey] = w
		}
		sum := w.add(value, e.Time, ds.Window, ds.WarmupEvents, e.RequestID)
		if st := &w.Stat; !w.Fired && st.warm(ds.WarmupEvents) && warm(ds, p, st.N, e.Time) {
			usual := st.usual()
			if limit := ds.Factor * usual; sum > limit {
				w.Fired = true
				d.report(s, tokenFinding(OrderNotional, e, fmt.Sprintf("token %s ordered %s %s in the current %s window; usual %s (limit %s)",
					e.TokenID, num(sum), unit, ds.Window, num(usual), num(limit)),
					Evidence{Observed: round(sum), Baseline: round(usual), Threshold: round(limit), Factor: ds.Factor, Unit: unit + " per " + ds.Window.String(),
						Window: ds.Window.String(), Observations: st.N, Requests: w.Reqs}))
			}
		}
	}

	fired := false
	if ds := s.hot.orderSize; ds != nil && sizeKey != "" {
		st := p.Size[sizeKey]
		if st != nil && st.warm(ds.WarmupEvents) && warm(ds, p, st.N, e.Time) {
			usual := st.usual()
			if limit := ds.Factor * usual; value > limit {
				fired = true
				d.report(s, tokenFinding(OrderSize, e, fmt.Sprintf("token %s placed an order of %s %s, %.1f× its usual %s (limit %s)",
					e.TokenID, num(value), unit, value/usual, num(usual), num(limit)),
					Evidence{Observed: round(value), Baseline: round(usual), Threshold: round(limit), Factor: ds.Factor, Unit: unit,
						Observations: st.N, Item: e.Instrument, Requests: appendReq(nil, e.RequestID)}))
			}
		}
		if allowed && !fired {
			if st == nil {
				if len(p.Size) >= maxSizeKeys {
					evictStat(p.Size)
				}
				st = &logStat{}
				p.Size[sizeKey] = st
			}
			st.learn(value, e.Time, ds.WarmupEvents)
		}
	}

	if e.Instrument != "" {
		_, known := p.Instruments[inst]
		if ds := s.hot.newInstrument; ds != nil && !known && warm(ds, p, p.Orders, e.Time) {
			d.report(s, tokenFinding(NewInstrument, e, fmt.Sprintf("token %s placed its first order on %s (%d instruments known)", e.TokenID, inst, len(p.Instruments)),
				Evidence{Observed: 1, Item: "instrument " + inst, Known: len(p.Instruments), Observations: p.Orders, Requests: appendReq(nil, e.RequestID)}))
		}
		if allowed {
			bump(p.Instruments, inst, maxInstruments)
		}
	}

	if ds := s.hot.offHours; ds != nil {
		slot := hourOfWeek(e.Time, s.Location)
		hour := e.Time.Unix() / 3600
		if warm(ds, p, p.Hours.Total, e.Time) && !p.Hours.usual(slot) && p.firedHour != hour {
			p.firedHour = hour
			d.report(s, tokenFinding(OffHours, e, fmt.Sprintf("token %s placed an order at %s %s, an hour in which it never traded", e.TokenID, slotName(slot), s.Location),
				Evidence{Observed: 0, Item: slotName(slot) + " " + s.Location.String(), Observations: p.Hours.Total, Requests: appendReq(nil, e.RequestID)}))
		}
	}
	if allowed {
		p.Hours.learn(e.Time, s.Location)
		p.Orders++
	}
}

// orderValues reads an order's size: its value and unit, and the keys of
// its size baseline and of its notional-per-window baseline ("" when the
// event has no usable amount). With a currency (the policy engine's
// notional, "60 USDT") sizes compare across instruments; without one, the
// instrument's base quantity (or the quote amount the bot gave) is used,
// per instrument.
func orderValues(e audit.Event, inst string) (value float64, unit, sizeKey, notionalKey string) {
	if v, cur, ok := ParseAmount(e.Notional); ok && cur != "" {
		return v, cur, "n:" + cur, cur
	}
	if e.Instrument == "" {
		return 0, "", "", ""
	}
	if q, _, ok := ParseAmount(e.Quantity); ok {
		return q, e.Instrument + " quantity", "q:" + inst, "q:" + inst
	}
	if v, _, ok := ParseAmount(e.Notional); ok {
		return v, e.Instrument + " quote amount", "a:" + inst, "a:" + inst
	}
	return 0, "", "", ""
}

// evictWindow forgets the notional window learned from the fewest values.
func evictWindow(m map[string]*windowSum) {
	counts := make(map[string]int64, len(m))
	for k, w := range m {
		counts[k] = w.Stat.N
	}
	evictMin(counts)
	for k := range m {
		if _, ok := counts[k]; !ok {
			delete(m, k)
		}
	}
}

// evictStat forgets the size baseline learned from the fewest values.
func evictStat(m map[string]*logStat) {
	counts := make(map[string]int64, len(m))
	for k, s := range m {
		counts[k] = s.N
	}
	evictMin(counts)
	for k := range m {
		if _, ok := counts[k]; !ok {
			delete(m, k)
		}
	}
}

// adminAction runs admin_hours on an admin API write.
func (d *Detector) adminAction(s *Settings, e audit.Event) {
	p := d.profileFor(adminKey, e.Time, s.MaxTokens)
	p.dirty = true
	if ds := s.hot.adminHours; ds != nil {
		slot := hourOfWeek(e.Time, s.Location)
		first := p.First
		if p.Hours.First != 0 {
			first = time.Unix(p.Hours.First, 0)
		}
		if p.Hours.Total >= int64(ds.WarmupEvents) && e.Time.Sub(first) >= ds.WarmupTime && !p.Hours.usual(slot) {
			d.report(s, Finding{Time: e.Time, Detector: AdminHours, Subject: adminKey, Source: e.Source, trigger: e,
				Summary: fmt.Sprintf("admin action %s at %s %s, an hour with no admin activity learned", e.Operation, slotName(slot), s.Location),
				Evidence: Evidence{Observed: 0, Item: e.Operation + " at " + slotName(slot) + " " + s.Location.String(),
					Observations: p.Hours.Total, Requests: appendReq(nil, e.RequestID)}})
		}
	}
	if e.Decision == audit.Allow {
		p.Hours.learn(e.Time, s.Location)
	}
}

// round keeps 4 significant decimals for evidence.
func round(f float64) float64 {
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(f))))
	return math.Round(f*scale) / scale
}

// num formats an amount for a summary.
func num(f float64) string { return fmt.Sprintf("%.6g", f) }
