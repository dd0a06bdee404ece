package detect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Hold kinds.
const (
	// HoldThrottle limits one token's requests (Subject: its public id)
	// until Until.
	HoldThrottle = "throttle"
	// HoldFreezeVenue refuses every request to a venue (Subject: the
	// venue id) until an admin releases it.
	HoldFreezeVenue = "freeze_venue"
	// HoldFreezeCredential refuses every request to the venues signing
	// with a vault credential (Subject: the credential name) until an
	// admin releases it.
	HoldFreezeCredential = "freeze_credential" // #nosec G101 -- a hold kind, not a credential
)

// Rules of refused requests (the gateway answers them in its error body
// and audit record).
const (
	RuleThrottle         = "detect.throttle"
	RuleFrozenVenue      = "detect.frozen_venue"
	RuleFrozenCredential = "detect.frozen_credential"
)

// ErrNoHold is returned by Release for a hold that is not in force.
var ErrNoHold = errors.New("detect: no such hold")

// Hold is a throttle or a freeze the detector put in force. It names
// public things only: a token id, a venue id, a credential name.
type Hold struct {
	Kind    string    `json:"kind"`
	Subject string    `json:"subject"`
	Since   time.Time `json:"since"`
	// Until is when a throttle ends; zero for freezes (until released).
	Until time.Time `json:"until,omitzero"`
	// Requests per Per is a throttle's limit (and burst).
	Requests int           `json:"requests,omitempty"`
	Per      time.Duration `json:"per_ns,omitempty"`
	// Detector and Finding say what put it in force.
	Detector string `json:"detector"`
	Finding  string `json:"finding"`
}

// HoldStore persists holds. Implementations are safe for concurrent use;
// each call is one transaction.
type HoldStore interface {
	// Holds returns every stored hold.
	Holds(ctx context.Context) ([]Hold, error)
	// PutHold inserts or replaces the hold with h's kind and subject.
	PutHold(ctx context.Context, h Hold) error
	// DeleteHold removes a hold; removing an absent one is not an error.
	DeleteHold(ctx context.Context, kind, subject string) error
}

// throttle is a throttle hold with its token bucket.
type throttle struct {
	hold   Hold
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take spends one request at now, or says how long to wait for one.
func (t *throttle) take(now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rate := float64(t.hold.Requests) / t.hold.Per.Seconds() // requests per second
	if el := now.Sub(t.last).Seconds(); el > 0 {
		t.tokens = min(float64(t.hold.Requests), t.tokens+el*rate)
		t.last = now
	}
	if t.tokens >= 1 {
		t.tokens--
		return true, 0
	}
	wait := time.Duration((1 - t.tokens) / rate * float64(time.Second))
	return false, max(wait, time.Second)
}

// holdSet is an immutable snapshot of the holds (the throttles' buckets
// are shared between snapshots).
type holdSet struct {
	throttles map[string]*throttle // by token id
	venues    map[string]Hold
	creds     map[string]Hold
	credOf    map[string]string // venue -> credential (from the settings)
}

func (h *holdSet) len() int {
	if h == nil {
		return 0
	}
	return len(h.throttles) + len(h.venues) + len(h.creds)
}

// all lists the holds, sorted by kind and subject.
func (h *holdSet) all() []Hold {
	if h == nil {
		return nil
	}
	out := make([]Hold, 0, h.len())
	for _, t := range h.throttles {
		out = append(out, t.hold)
	}
	for _, v := range h.venues {
		out = append(out, v)
	}
	for _, c := range h.creds {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Hold) int { return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Subject, b.Subject)) })
	return out
}

// Admit is consulted by the gateway for every request whose token
// verified, before its body is read or anything is signed. It returns ""
// to admit the request, else the rule that refuses it and, for a throttle,
// how long to wait (429 with Retry-After); a refusal without a wait is a
// freeze (403). It never blocks and touches no store.
func (d *Detector) Admit(tokenID, venueID string, now time.Time) (string, time.Duration) {
	h := d.holds.Load()
	if h.len() == 0 {
		return "", 0
	}
	if _, ok := h.venues[venueID]; ok {
		return RuleFrozenVenue, 0
	}
	if c, ok := h.credOf[venueID]; ok {
		if _, ok := h.creds[c]; ok {
			return RuleFrozenCredential, 0
		}
	}
	if t := h.throttles[tokenID]; t != nil && now.Before(t.hold.Until) {
		if ok, wait := t.take(now); !ok {
			return RuleThrottle, wait
		}
	}
	return "", 0
}

// Holds lists the holds in force.
func (d *Detector) Holds() []Hold { return d.holds.Load().all() }

// Release lifts a hold (an admin's decision). It returns ErrNoHold if
// there is none of that kind on that subject.
func (d *Detector) Release(ctx context.Context, kind, subject string) error {
	d.holdMu.Lock()
	defer d.holdMu.Unlock()
	cur := d.holds.Load().all()
	i := slices.IndexFunc(cur, func(h Hold) bool { return h.Kind == kind && h.Subject == subject })
	if i < 0 {
		return fmt.Errorf("%w: %s %q", ErrNoHold, kind, subject)
	}
	if d.o.Holds != nil {
		if err := d.o.Holds.DeleteHold(ctx, kind, subject); err != nil {
			return fmt.Errorf("detect: release %s %s: %w", kind, subject, err)
		}
	}
	d.publishHolds(slices.Delete(cur, i, i+1))
	d.log.Info("detect: hold released", "kind", kind, "subject", subject)
	return nil
}

// putHold stores and publishes h, replacing any hold of its kind and
// subject.
func (d *Detector) putHold(ctx context.Context, h Hold) error {
	d.holdMu.Lock()
	defer d.holdMu.Unlock()
	if d.o.Holds != nil {
		if err := d.o.Holds.PutHold(ctx, h); err != nil {
			return fmt.Errorf("detect: store %s %s: %w", h.Kind, h.Subject, err)
		}
	}
	cur := slices.DeleteFunc(d.holds.Load().all(), func(o Hold) bool { return o.Kind == h.Kind && o.Subject == h.Subject })
	d.publishHolds(append(cur, h))
	return nil
}

// hold returns the hold of kind on subject, if in force.
func (d *Detector) hold(kind, subject string) (Hold, bool) {
	h := d.holds.Load()
	switch kind {
	case HoldThrottle:
		if t := h.throttles[subject]; t != nil {
			return t.hold, true
		}
	case HoldFreezeVenue:
		v, ok := h.venues[subject]
		return v, ok
	case HoldFreezeCredential:
		c, ok := h.creds[subject]
		return c, ok
	}
	return Hold{}, false
}

// publishHolds builds a new snapshot from list (holdMu held). Throttles
// that are still the same keep their buckets.
func (d *Detector) publishHolds(list []Hold) {
	old := d.holds.Load()
	n := &holdSet{throttles: map[string]*throttle{}, venues: map[string]Hold{}, creds: map[string]Hold{},
		credOf: d.settings.Load().Credentials}
	for _, h := range list {
		switch h.Kind {
		case HoldThrottle:
			if old != nil {
				if t := old.throttles[h.Subject]; t != nil && sameHold(t.hold, h) {
					n.throttles[h.Subject] = t
					continue
				}
			}
			n.throttles[h.Subject] = &throttle{hold: h, tokens: float64(h.Requests), last: h.Since}
		case HoldFreezeVenue:
			n.venues[h.Subject] = h
		case HoldFreezeCredential:
			n.creds[h.Subject] = h
		}
	}
	d.holds.Store(n)
}

// sameHold reports whether a and b are the same hold, whatever clock
// reading or location their times carry (one read back from a store keeps
// its throttle's bucket).
func sameHold(a, b Hold) bool {
	return a.Kind == b.Kind && a.Subject == b.Subject && a.Since.Equal(b.Since) && a.Until.Equal(b.Until) &&
		a.Requests == b.Requests && a.Per == b.Per && a.Detector == b.Detector && a.Finding == b.Finding
}

// ReloadHolds re-reads the holds from the store: replicas sharing one
// call it when another process put or released a hold. A throttle that
// did not change keeps its bucket.
func (d *Detector) ReloadHolds(ctx context.Context) error { return d.loadHolds(ctx) }

func (d *Detector) loadHolds(ctx context.Context) error {
	var list []Hold
	if d.o.Holds != nil {
		var err error
		if list, err = d.o.Holds.Holds(ctx); err != nil {
			return fmt.Errorf("detect: load holds: %w", err)
		}
	}
	list = slices.DeleteFunc(list, func(h Hold) bool {
		bad := h.Subject == "" || h.Kind == HoldThrottle && (h.Requests < 1 || h.Per <= 0)
		if bad {
			d.log.Warn("detect: stored hold ignored", "kind", h.Kind, "subject", h.Subject)
		}
		return bad
	})
	d.holdMu.Lock()
	d.publishHolds(list)
	d.holdMu.Unlock()
	return nil
}

// expireHolds removes the throttles that have ended (worker goroutine).
func (d *Detector) expireHolds() {
	now := d.now()
	h := d.holds.Load()
	var ended []Hold
	for _, t := range h.throttles {
		if !now.Before(t.hold.Until) {
			ended = append(ended, t.hold)
		}
	}
	for _, e := range ended {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.holdMu.Lock()
		err := error(nil)
		if d.o.Holds != nil {
			err = d.o.Holds.DeleteHold(ctx, e.Kind, e.Subject)
		}
		if err == nil {
			cur := d.holds.Load()
			if t := cur.throttles[e.Subject]; t != nil && t.hold == e {
				d.publishHolds(slices.DeleteFunc(cur.all(), func(o Hold) bool { return o == e }))
			}
		}
		d.holdMu.Unlock()
		cancel()
		if err != nil {
			d.log.Warn("detect: remove an ended throttle", "token", e.Subject, "err", err)
			continue
		}
		d.log.Info("detect: throttle ended", "token", e.Subject)
	}
}
