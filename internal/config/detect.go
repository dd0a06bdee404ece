package config

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Detect configures anomaly detection (detect:). Every field is optional;
// a zero value means the default shown, and Resolve fills them in. The
// detectors learn per-token baselines from the gateway's audit events off
// the request path (internal/detect).
type Detect struct {
	// Enabled (detect.enabled) turns detection on or off as a whole.
	// Throttles and freezes already in force stay in force when it is off.
	// Default true.
	Enabled *bool `yaml:"enabled"`
	// QueueSize (detect.queue_size) is how many events may wait for the
	// detector; a request never waits for room: beyond it, events are
	// dropped, counted and reported (detector queue_drops). 1..1048576.
	// Default 8192.
	QueueSize int `yaml:"queue_size"`
	// TimeZone (detect.time_zone) is the IANA zone of the hour-of-week
	// profiles (off_hours, admin_hours). Default UTC.
	TimeZone string `yaml:"time_zone"`
	// MaxTokens (detect.max_tokens) caps the token profiles kept; beyond
	// it the least recently active token's profile is forgotten.
	// 1..1000000. Default 4096.
	MaxTokens int `yaml:"max_tokens"`
	// SaveEvery (detect.save_every) is how often changed baselines are
	// written to the store (and at shutdown). At most 1h. Default 30s.
	SaveEvery time.Duration `yaml:"save_every"`
	// Cooldown (detect.cooldown): a detector reports a finding about one
	// subject, and an action is taken on one subject, at most once per
	// cooldown; repeats are counted. At most 24h. Default 10m.
	Cooldown time.Duration `yaml:"cooldown"`
	// MaxActionsPerMinute (detect.max_actions_per_minute) caps the
	// findings acted on per minute over all subjects; the rest are
	// counted and logged. 1..100000. Default 60.
	MaxActionsPerMinute int `yaml:"max_actions_per_minute"`
	// Actions (detect.actions) are the actions taken for a finding of each
	// severity, unless the detector lists its own.
	Actions SeverityActions `yaml:"actions"`
	// Throttle (detect.throttle) is the limit the throttle action puts on
	// a token.
	Throttle Throttle `yaml:"throttle"`
	// Detectors (detect.detectors) configures each detector.
	Detectors Detectors `yaml:"detectors"`
}

// SeverityActions lists actions per severity. A nil list means the
// default; an empty list ([]) means no action (the finding is still
// written to the audit log).
type SeverityActions struct {
	// Info (actions.info). Default [alert].
	Info []string `yaml:"info"`
	// Warning (actions.warning). Default [alert].
	Warning []string `yaml:"warning"`
	// Critical (actions.critical). Default [alert, throttle].
	Critical []string `yaml:"critical"`
}

// Throttle is the temporary per-token limit of the throttle action.
type Throttle struct {
	// Requests (throttle.requests) per Per are allowed to the throttled
	// token (also its burst). 1..1000000. Default 6.
	Requests int `yaml:"requests"`
	// Per (throttle.per). At most 24h. Default 1m.
	Per time.Duration `yaml:"per"`
	// Duration (throttle.duration) is how long the throttle lasts. At most
	// 720h. Default 15m.
	Duration time.Duration `yaml:"duration"`
}

// Detectors configures each detector (detect.detectors.<name>). Keys a
// detector does not use are errors; DetectorKeys lists them.
type Detectors struct {
	// OrderRate (order_rate): orders per window of a token against its
	// learned baseline.
	OrderRate Detector `yaml:"order_rate"`
	// OrderNotional (order_notional): a token's order notional per window
	// (per currency) against its learned baseline.
	OrderNotional Detector `yaml:"order_notional"`
	// OrderSize (order_size): one order's notional (or quantity, per
	// instrument, when no notional is known) far above the token's usual.
	OrderSize Detector `yaml:"order_size"`
	// NewInstrument (new_instrument): a token's first order on an
	// instrument, or first request to a venue, after warm-up.
	NewInstrument Detector `yaml:"new_instrument"`
	// OffHours (off_hours): an order in an hour of the week in which the
	// token never traded (nor in the hours either side).
	OffHours Detector `yaml:"off_hours"`
	// NewSource (new_source): a request from a source address the token
	// never used, after warm-up.
	NewSource Detector `yaml:"new_source"`
	// AuthFailures (auth_failures): bursts of failed token checks, per
	// source address (threshold) and over all sources (total_threshold).
	AuthFailures Detector `yaml:"auth_failures"`
	// PolicyDenials (policy_denials): bursts of policy and scope denials
	// of one token.
	PolicyDenials Detector `yaml:"policy_denials"`
	// VenueErrors (venue_errors): bursts of 5xx answers (or unreachable
	// upstreams) of one venue.
	VenueErrors Detector `yaml:"venue_errors"`
	// RateLimited (rate_limited): bursts of 429s (the venue's, or
	// keystile's venue rate-limit model) for one token.
	RateLimited Detector `yaml:"rate_limited"`
	// SensitiveOperations (sensitive_operations): any attempt, allowed or
	// denied, at an operation in operations (withdrawals, transfers, API
	// key management).
	SensitiveOperations Detector `yaml:"sensitive_operations"`
	// ConcurrentSources (concurrent_sources): one token used from two
	// source addresses within window.
	ConcurrentSources Detector `yaml:"concurrent_sources"`
	// AdminHours (admin_hours): an admin action (admin API write) in an
	// hour of the week with no admin activity learned.
	AdminHours Detector `yaml:"admin_hours"`
	// QueueDrops (queue_drops): events dropped because the detector's
	// queue was full; reported at most once per window.
	QueueDrops Detector `yaml:"queue_drops"`
}

// Detector is one detector's settings. Which keys a detector uses is
// listed by DetectorKeys; zero values mean its defaults (DetectorDefaults).
type Detector struct {
	// Enabled (enabled). Default true.
	Enabled *bool `yaml:"enabled"`
	// Severity (severity) of its findings: info, warning or critical.
	Severity string `yaml:"severity"`
	// Actions (actions) taken for its findings; nil means
	// detect.actions.<severity>; [] means none. Each is alert, throttle,
	// freeze (the token), freeze_credential (the venue's credential),
	// freeze_venue or kill.
	Actions []string `yaml:"actions"`
	// Factor (factor): a finding when the observed value exceeds factor ×
	// the learned usual value. 1 < factor <= 1000.
	Factor float64 `yaml:"factor"`
	// Window (window) over which events are counted or summed.
	Window time.Duration `yaml:"window"`
	// Threshold (threshold): events per window that make a burst
	// (auth_failures: per source address).
	Threshold int `yaml:"threshold"`
	// TotalThreshold (total_threshold): auth failures per window over all
	// sources.
	TotalThreshold int `yaml:"total_threshold"`
	// MinCount (min_count): order_rate reports nothing below this many
	// orders per window, whatever the baseline.
	MinCount int `yaml:"min_count"`
	// WarmupEvents (warmup_events): observations learned before the
	// detector may report (windows for order_rate and order_notional,
	// orders or requests for the others).
	WarmupEvents int `yaml:"warmup_events"`
	// WarmupTime (warmup_time): time since a token was first seen (for
	// admin_hours: since the first admin action) before the detector may
	// report. "0s" means no time condition.
	WarmupTime *time.Duration `yaml:"warmup_time"`
	// Operations (operations): globs (path.Match) over operation names
	// that sensitive_operations reports.
	Operations []string `yaml:"operations"`
}

// Detector names (keys of detect.detectors).
const (
	DetOrderRate           = "order_rate"
	DetOrderNotional       = "order_notional"
	DetOrderSize           = "order_size"
	DetNewInstrument       = "new_instrument"
	DetOffHours            = "off_hours"
	DetNewSource           = "new_source"
	DetAuthFailures        = "auth_failures"
	DetPolicyDenials       = "policy_denials"
	DetVenueErrors         = "venue_errors"
	DetRateLimited         = "rate_limited"
	DetSensitiveOps        = "sensitive_operations"
	DetConcurrentSources   = "concurrent_sources"
	DetAdminHours          = "admin_hours"
	DetQueueDrops          = "queue_drops"
	SeverityInfo           = "info"
	SeverityWarning        = "warning"
	SeverityCritical       = "critical"
	ActionAlert            = "alert"
	ActionThrottle         = "throttle"
	ActionFreeze           = "freeze"
	ActionFreezeCredential = "freeze_credential" // #nosec G101 -- an action name, not a credential
	ActionFreezeVenue      = "freeze_venue"
	ActionKill             = "kill"
)

// DetectorNames lists the detectors in documentation order.
func DetectorNames() []string {
	return []string{DetOrderRate, DetOrderNotional, DetOrderSize, DetNewInstrument, DetOffHours, DetNewSource,
		DetAuthFailures, DetPolicyDenials, DetVenueErrors, DetRateLimited, DetSensitiveOps, DetConcurrentSources,
		DetAdminHours, DetQueueDrops}
}

// Actions lists the action names.
func Actions() []string {
	return []string{ActionAlert, ActionThrottle, ActionFreeze, ActionFreezeCredential, ActionFreezeVenue, ActionKill}
}

// commonKeys are the keys every detector takes.
func commonKeys() []string { return []string{"enabled", "severity", "actions"} }

// DetectorKeys returns the keys detector name takes besides enabled,
// severity and actions (nil for an unknown name).
func DetectorKeys(name string) []string {
	switch name {
	case DetOrderRate:
		return []string{"factor", "window", "min_count", "warmup_events", "warmup_time"}
	case DetOrderNotional:
		return []string{"factor", "window", "warmup_events", "warmup_time"}
	case DetOrderSize:
		return []string{"factor", "warmup_events", "warmup_time"}
	case DetNewInstrument, DetOffHours, DetNewSource, DetAdminHours:
		return []string{"warmup_events", "warmup_time"}
	case DetAuthFailures:
		return []string{"threshold", "total_threshold", "window"}
	case DetPolicyDenials, DetVenueErrors, DetRateLimited:
		return []string{"threshold", "window"}
	case DetSensitiveOps:
		return []string{"operations"}
	case DetConcurrentSources, DetQueueDrops:
		return []string{"window"}
	}
	return nil
}

// detectorTargets says what a detector's findings are about: a token (the
// throttle and freeze actions apply) and/or a venue (freeze_credential and
// freeze_venue apply).
func detectorTargets(name string) (token, venue bool) {
	switch name {
	case DetAuthFailures, DetAdminHours, DetQueueDrops:
		return false, false
	case DetVenueErrors:
		return false, true
	}
	return true, true
}

func dur(d time.Duration) *time.Duration { return &d }

// DetectorDefaults returns the defaults of detector name (the zero
// Detector for an unknown name).
func DetectorDefaults(name string) Detector {
	on := true
	d := Detector{Enabled: &on, Severity: SeverityWarning}
	switch name {
	case DetOrderRate:
		d.Factor, d.Window, d.MinCount, d.WarmupEvents, d.WarmupTime = 2, time.Minute, 5, 30, dur(time.Hour)
	case DetOrderNotional:
		d.Factor, d.Window, d.WarmupEvents, d.WarmupTime = 2, 10*time.Minute, 20, dur(time.Hour)
	case DetOrderSize:
		d.Severity, d.Factor, d.WarmupEvents, d.WarmupTime = SeverityCritical, 5, 20, dur(time.Hour)
	case DetNewInstrument:
		d.WarmupEvents, d.WarmupTime = 50, dur(24*time.Hour)
	case DetOffHours:
		d.Severity, d.WarmupEvents, d.WarmupTime = SeverityInfo, 200, dur(7*24*time.Hour)
	case DetNewSource:
		d.WarmupEvents, d.WarmupTime = 20, dur(time.Hour)
	case DetAuthFailures:
		d.Threshold, d.TotalThreshold, d.Window = 10, 50, time.Minute
	case DetPolicyDenials:
		d.Threshold, d.Window = 20, time.Minute
	case DetVenueErrors:
		d.Threshold, d.Window = 10, time.Minute
	case DetRateLimited:
		d.Severity, d.Threshold, d.Window = SeverityInfo, 10, time.Minute
	case DetSensitiveOps:
		d.Severity, d.Operations = SeverityCritical, []string{"wallet.*", "apikey.*"}
	case DetConcurrentSources:
		d.Severity, d.Window = SeverityCritical, 10*time.Second
	case DetAdminHours:
		d.WarmupEvents, d.WarmupTime = 30, dur(7*24*time.Hour)
	case DetQueueDrops:
		d.Window = time.Minute
	default:
		return Detector{}
	}
	return d
}

// Get returns the settings of detector name and whether the name exists.
func (ds *Detectors) Get(name string) (*Detector, bool) {
	switch name {
	case DetOrderRate:
		return &ds.OrderRate, true
	case DetOrderNotional:
		return &ds.OrderNotional, true
	case DetOrderSize:
		return &ds.OrderSize, true
	case DetNewInstrument:
		return &ds.NewInstrument, true
	case DetOffHours:
		return &ds.OffHours, true
	case DetNewSource:
		return &ds.NewSource, true
	case DetAuthFailures:
		return &ds.AuthFailures, true
	case DetPolicyDenials:
		return &ds.PolicyDenials, true
	case DetVenueErrors:
		return &ds.VenueErrors, true
	case DetRateLimited:
		return &ds.RateLimited, true
	case DetSensitiveOps:
		return &ds.SensitiveOperations, true
	case DetConcurrentSources:
		return &ds.ConcurrentSources, true
	case DetAdminHours:
		return &ds.AdminHours, true
	case DetQueueDrops:
		return &ds.QueueDrops, true
	}
	return nil, false
}

// Resolve returns a copy of d with every default filled in: the detect
// section as the detector runs it.
func (d Detect) Resolve() Detect {
	r := d
	if r.Enabled == nil {
		on := true
		r.Enabled = &on
	}
	r.QueueSize = or(r.QueueSize, 8192)
	r.TimeZone = or(r.TimeZone, "UTC")
	r.MaxTokens = or(r.MaxTokens, 4096)
	r.SaveEvery = or(r.SaveEvery, 30*time.Second)
	r.Cooldown = or(r.Cooldown, 10*time.Minute)
	r.MaxActionsPerMinute = or(r.MaxActionsPerMinute, 60)
	if r.Actions.Info == nil {
		r.Actions.Info = []string{ActionAlert}
	}
	if r.Actions.Warning == nil {
		r.Actions.Warning = []string{ActionAlert}
	}
	if r.Actions.Critical == nil {
		r.Actions.Critical = []string{ActionAlert, ActionThrottle}
	}
	r.Throttle.Requests = or(r.Throttle.Requests, 6)
	r.Throttle.Per = or(r.Throttle.Per, time.Minute)
	r.Throttle.Duration = or(r.Throttle.Duration, 15*time.Minute)
	for _, name := range DetectorNames() {
		cur, _ := r.Detectors.Get(name)
		def := DetectorDefaults(name)
		if cur.Enabled == nil {
			cur.Enabled = def.Enabled
		}
		cur.Severity = or(cur.Severity, def.Severity)
		cur.Factor = or(cur.Factor, def.Factor)
		cur.Window = or(cur.Window, def.Window)
		cur.Threshold = or(cur.Threshold, def.Threshold)
		cur.TotalThreshold = or(cur.TotalThreshold, def.TotalThreshold)
		cur.MinCount = or(cur.MinCount, def.MinCount)
		cur.WarmupEvents = or(cur.WarmupEvents, def.WarmupEvents)
		if cur.WarmupTime == nil {
			cur.WarmupTime = def.WarmupTime
		}
		if cur.Operations == nil {
			cur.Operations = def.Operations
		}
		if cur.Actions == nil {
			cur.Actions = r.Actions.For(cur.Severity)
		}
	}
	return r
}

// For returns the actions of severity sev.
func (a SeverityActions) For(sev string) []string {
	switch sev {
	case SeverityInfo:
		return a.Info
	case SeverityWarning:
		return a.Warning
	case SeverityCritical:
		return a.Critical
	}
	return nil
}

// detect validates the detect section.
func (ck *checker) detect(d Detect) {
	const p = "detect"
	rangeInt := func(key string, v, lo, hi int) {
		if v < 0 || v > hi || (v < lo && (v != 0 || ck.d.present(key))) {
			ck.add(key, "must be between %d and %d, got %d", lo, hi, v)
		}
	}
	maxDur := func(key string, v, hi time.Duration) {
		ck.positive(key, v)
		if v > hi {
			ck.add(key, "must be at most %s, got %s", hi, v)
		}
	}
	rangeInt(p+".queue_size", d.QueueSize, 1, 1<<20)
	rangeInt(p+".max_tokens", d.MaxTokens, 1, 1_000_000)
	rangeInt(p+".max_actions_per_minute", d.MaxActionsPerMinute, 1, 100_000)
	maxDur(p+".save_every", d.SaveEvery, time.Hour)
	maxDur(p+".cooldown", d.Cooldown, 24*time.Hour)
	if d.TimeZone != "" {
		if _, err := time.LoadLocation(d.TimeZone); err != nil || strings.EqualFold(d.TimeZone, "local") {
			ck.add(p+".time_zone", "unknown IANA time zone %q (e.g. UTC, Europe/London)", d.TimeZone)
		}
	}
	for _, s := range []struct {
		sev  string
		list []string
	}{{SeverityInfo, d.Actions.Info}, {SeverityWarning, d.Actions.Warning}, {SeverityCritical, d.Actions.Critical}} {
		ck.actions(p+".actions."+s.sev, s.list, "", true, true)
	}
	rangeInt(p+".throttle.requests", d.Throttle.Requests, 1, 1_000_000)
	maxDur(p+".throttle.per", d.Throttle.Per, 24*time.Hour)
	maxDur(p+".throttle.duration", d.Throttle.Duration, 720*time.Hour)

	for _, name := range DetectorNames() {
		det, _ := d.Detectors.Get(name)
		ck.detector(p+".detectors."+name, name, *det)
	}
}

// actions checks an action list; detector is "" for the per-severity
// defaults (which apply only where they can).
func (ck *checker) actions(key string, list []string, detector string, token, venue bool) {
	seen := map[string]bool{}
	for i, a := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case !slices.Contains(Actions(), a):
			ck.add(k, "must be one of %s, got %q", strings.Join(Actions(), "|"), a)
		case seen[a]:
			ck.add(k, "duplicate action %q", a)
		case !token && (a == ActionThrottle || a == ActionFreeze):
			ck.add(k, "%s findings are not about a token: %s cannot apply", detector, a)
		case !venue && (a == ActionFreezeCredential || a == ActionFreezeVenue):
			ck.add(k, "%s findings are not about a venue: %s cannot apply", detector, a)
		}
		seen[a] = true
	}
}

func (ck *checker) detector(p, name string, d Detector) {
	uses := DetectorKeys(name)
	for _, k := range []string{"factor", "window", "threshold", "total_threshold", "min_count", "warmup_events", "warmup_time", "operations"} {
		if ck.d.present(p+"."+k) && !slices.Contains(uses, k) {
			ck.add(p+"."+k, "not used by %s (it takes %s)", name, strings.Join(append(commonKeys(), uses...), ", "))
		}
	}
	ck.oneOf(p+".severity", d.Severity, SeverityInfo, SeverityWarning, SeverityCritical)
	token, venue := detectorTargets(name)
	ck.actions(p+".actions", d.Actions, name, token, venue)
	if d.Factor != 0 || ck.d.present(p+".factor") {
		if !(d.Factor > 1 && d.Factor <= 1000) { // also refuses NaN
			ck.add(p+".factor", "must be above 1 and at most 1000, got %v", d.Factor)
		}
	}
	switch name {
	case DetConcurrentSources:
		ck.positive(p+".window", d.Window)
		if d.Window > time.Hour {
			ck.add(p+".window", "must be at most 1h, got %s", d.Window)
		}
	default:
		ck.positive(p+".window", d.Window)
		if d.Window > 24*time.Hour {
			ck.add(p+".window", "must be at most 24h, got %s", d.Window)
		}
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"threshold", d.Threshold}, {"total_threshold", d.TotalThreshold}, {"min_count", d.MinCount}, {"warmup_events", d.WarmupEvents}} {
		if f.v < 0 || f.v > 1_000_000 || (f.v == 0 && ck.d.present(p+"."+f.key)) {
			ck.add(p+"."+f.key, "must be between 1 and 1000000, got %d", f.v)
		}
	}
	if w := d.WarmupTime; w != nil && (*w < 0 || *w > 90*24*time.Hour) {
		ck.add(p+".warmup_time", "must be between 0s and 2160h, got %s", *w)
	}
	if name == DetSensitiveOps && d.Operations != nil && len(d.Operations) == 0 {
		ck.add(p+".operations", "must list at least one operation glob (disable the detector with enabled: false)")
	}
	for i, g := range d.Operations {
		if _, err := path.Match(g, "x"); err != nil || g == "" || strings.ContainsAny(g, " \t/") {
			ck.add(fmt.Sprintf("%s.operations[%d]", p, i), "invalid operation glob %q", g)
		}
	}
}
