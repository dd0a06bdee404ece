package detect

import (
	"slices"
	"time"
)

// maxRecent bounds the findings Recent can return (memory only: a restart
// forgets them; the audit log keeps every one).
const maxRecent = 64

// FindingView is a reported finding as operators see it (keystile status,
// keystile detect status): what was found and what was done about it.
// Never a source address or a secret.
type FindingView struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Detector string    `json:"detector"`
	Severity string    `json:"severity"`
	// Subject is "token:<id>", "venue:<id>", "source:<hash>", "sources",
	// "admin" or "detector".
	Subject string       `json:"subject"`
	TokenID string       `json:"token_id,omitempty"`
	Venue   string       `json:"venue,omitempty"`
	Summary string       `json:"summary"`
	Actions []ActionView `json:"actions"`
}

// ActionView is one action taken on a finding and its result (done,
// in_force, skipped, failed).
type ActionView struct {
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// remember keeps f among the recent findings (worker only).
func (d *Detector) remember(f Finding) {
	v := FindingView{ID: f.ID, Time: f.Time.UTC(), Detector: f.Detector, Severity: f.Severity, Subject: f.Subject,
		TokenID: f.TokenID, Venue: f.Venue, Summary: f.Summary, Actions: []ActionView{}}
	d.latelyMu.Lock()
	defer d.latelyMu.Unlock()
	if len(d.lately) == maxRecent {
		d.lately = slices.Delete(d.lately, 0, 1)
	}
	d.lately = append(d.lately, v)
}

// noteAction adds an action's result to the recent finding id (worker
// only).
func (d *Detector) noteAction(id string, a ActionView) {
	d.latelyMu.Lock()
	defer d.latelyMu.Unlock()
	for i := len(d.lately) - 1; i >= 0; i-- {
		if d.lately[i].ID == id {
			d.lately[i].Actions = append(d.lately[i].Actions, a)
			return
		}
	}
}

// Recent returns the findings reported at or after since that are still
// remembered (the last 64, since the detector started), newest first. It
// is safe for concurrent use and never waits for the worker.
func (d *Detector) Recent(since time.Time) []FindingView {
	d.latelyMu.Lock()
	defer d.latelyMu.Unlock()
	out := []FindingView{}
	for i := len(d.lately) - 1; i >= 0; i-- {
		v := d.lately[i]
		if v.Time.Before(since) {
			continue
		}
		v.Actions = slices.Clone(v.Actions)
		out = append(out, v)
	}
	return out
}
