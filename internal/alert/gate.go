package alert

import "time"

// gate is the deduplication and rate-limit state of one (detector,
// subject) pair. It is owned by the router goroutine.
type gate struct {
	// windowEnd ends the dedupe window opened by the last message sent;
	// lastSev is that message's severity.
	windowEnd time.Time
	lastSev   Severity
	// sent are the times of recent messages (rate limit), oldest first.
	sent []time.Time
	// held is the latest alert held back; heldCount counts every held
	// alert (with their own counts), heldFirst is the first one's time and
	// heldSev the highest severity among them.
	held      *Alert
	heldCount int
	heldFirst time.Time
	heldSev   Severity
}

// rateOK reports whether one more message fits the rate limit at now,
// forgetting sends older than the period.
func (g *gate) rateOK(now time.Time, p *Policy) bool {
	if p.RateCount == 0 {
		g.sent = g.sent[:0]
		return true
	}
	i := 0
	for i < len(g.sent) && !g.sent[i].After(now.Add(-p.RatePer)) {
		i++
	}
	g.sent = append(g.sent[:0], g.sent[i:]...)
	return len(g.sent) < p.RateCount
}

// record notes a message sent at now.
func (g *gate) record(out *Alert, now time.Time, p *Policy) {
	g.windowEnd = now.Add(p.DedupeWindow)
	g.lastSev = out.Severity
	if p.RateCount > 0 {
		g.sent = append(g.sent, now)
	}
	g.held, g.heldCount, g.heldFirst, g.heldSev = nil, 0, time.Time{}, 0
}

// idle reports whether the gate holds nothing and constrains nothing.
func (g *gate) idle(now time.Time, p *Policy) bool {
	return g.heldCount == 0 && !now.Before(g.windowEnd) && (p.RateCount == 0 || len(g.sent) == 0 || !g.sent[len(g.sent)-1].After(now.Add(-p.RatePer)))
}

// admit runs a through its pair's gate: it goes out now (with any held
// repeats folded in) if the pair's window has ended, or a is more severe
// than the last message, and the rate limit allows; otherwise it is held.
func (d *Dispatcher) admit(a Alert) {
	p := d.policy.Load()
	if p.DedupeWindow == 0 && p.RateCount == 0 {
		d.dispatch(a)
		return
	}
	now := d.now()
	k := a.Key()
	g := d.gates[k]
	if g == nil {
		if len(d.gates) >= maxGates {
			d.evict(now, p)
		}
		if len(d.gates) >= maxGates {
			d.dispatch(a)
			return
		}
		g = &gate{}
		d.gates[k] = g
	}
	escalation := a.Severity > g.lastSev && a.Severity > g.heldSev
	if g.rateOK(now, p) && (!now.Before(g.windowEnd) || escalation) {
		out := a
		if g.heldCount > 0 {
			out.Count += g.heldCount
			out.FirstSeen = g.heldFirst
			out.Severity = max(out.Severity, g.heldSev)
			d.held.Add(-int64(g.heldCount))
		}
		g.record(&out, now, p)
		d.dispatch(out)
		return
	}
	if g.heldCount == 0 {
		g.heldFirst = a.Time
		if a.Count > 1 && !a.FirstSeen.IsZero() {
			g.heldFirst = a.FirstSeen
		}
	}
	held := a
	g.held = &held
	g.heldCount += a.Count
	g.heldSev = max(g.heldSev, a.Severity)
	d.held.Add(int64(a.Count))
	d.folded.Add(uint64(a.Count)) // #nosec G115 -- Count >= 1
	if next := g.windowEnd; d.nextFlush.IsZero() || next.Before(d.nextFlush) {
		d.nextFlush = next
	}
	if d.nextFlush.Before(now) {
		d.nextFlush = now.Add(time.Second) // held by the rate limit: look again soon
	}
}

// flush sends the held repeats of every pair whose window has ended (all
// of them when final, at Close) as one message per pair, and forgets idle
// pairs.
func (d *Dispatcher) flush(now time.Time, final bool) {
	p := d.policy.Load()
	d.nextFlush = time.Time{}
	for k, g := range d.gates {
		if g.heldCount == 0 {
			if g.idle(now, p) {
				delete(d.gates, k)
			}
			continue
		}
		if final || (!now.Before(g.windowEnd) && g.rateOK(now, p)) {
			out := *g.held
			out.Count = g.heldCount
			out.FirstSeen = g.heldFirst
			out.Severity = g.heldSev
			d.held.Add(-int64(g.heldCount))
			g.record(&out, now, p)
			d.dispatch(out)
			continue
		}
		next := g.windowEnd
		if !next.After(now) {
			next = now.Add(time.Second)
		}
		if d.nextFlush.IsZero() || next.Before(d.nextFlush) {
			d.nextFlush = next
		}
	}
}

// evict forgets idle pairs to make room.
func (d *Dispatcher) evict(now time.Time, p *Policy) {
	for k, g := range d.gates {
		if g.idle(now, p) {
			delete(d.gates, k)
		}
	}
}
