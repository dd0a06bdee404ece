package detect

import (
	"fmt"
	"path"
	"time"

	"github.com/keystile/keystile/internal/config"
)

// Severities of findings.
const (
	SeverityInfo     = config.SeverityInfo
	SeverityWarning  = config.SeverityWarning
	SeverityCritical = config.SeverityCritical
)

// Actions.
const (
	ActionAlert            = config.ActionAlert
	ActionThrottle         = config.ActionThrottle
	ActionFreeze           = config.ActionFreeze
	ActionFreezeCredential = config.ActionFreezeCredential
	ActionFreezeVenue      = config.ActionFreezeVenue
	ActionKill             = config.ActionKill
)

// Detector names.
const (
	OrderRate          = config.DetOrderRate
	OrderNotional      = config.DetOrderNotional
	OrderSize          = config.DetOrderSize
	NewInstrument      = config.DetNewInstrument
	OffHours           = config.DetOffHours
	NewSource          = config.DetNewSource
	AuthFailures       = config.DetAuthFailures
	PolicyDenials      = config.DetPolicyDenials
	VenueErrors        = config.DetVenueErrors
	RateLimited        = config.DetRateLimited
	SensitiveOps       = config.DetSensitiveOps
	ConcurrentSources  = config.DetConcurrentSources
	AdminHours         = config.DetAdminHours
	QueueDrops         = config.DetQueueDrops
	detectorNamePrefix = "detect."
)

// rule is the audit rule id of a detector's records.
func rule(detector string) string { return detectorNamePrefix + detector }

// Settings are the compiled detect section: immutable, swapped whole on
// reload (Detector.SetSettings). Make them with Compile (it also builds
// the per-event view of the enabled detectors).
type Settings struct {
	Enabled             bool
	QueueSize           int
	Location            *time.Location
	MaxTokens           int
	SaveEvery           time.Duration
	Cooldown            time.Duration
	MaxActionsPerMinute int
	Throttle            ThrottleSettings
	// Detectors by name; a disabled detector is absent.
	Detectors map[string]DetectorSettings
	// Credentials maps a venue id to the name of its vault credential
	// (freeze_credential holds are enforced for every venue using it).
	Credentials map[string]string

	// hot holds the enabled detectors' settings for the per-event path
	// (nil: disabled), filled by Compile.
	hot hotSettings
}

type hotSettings struct {
	orderRate, orderNotional, orderSize, newInstrument, offHours, newSource, authFailures,
	policyDenials, venueErrors, rateLimited, sensitive, concurrent, adminHours *DetectorSettings
}

// ThrottleSettings are the limit a throttle puts on a token.
type ThrottleSettings struct {
	Requests int
	Per      time.Duration
	Duration time.Duration
}

// DetectorSettings are one detector's resolved settings.
type DetectorSettings struct {
	Severity       string
	Actions        []string
	Factor         float64
	Window         time.Duration
	Threshold      int
	TotalThreshold int
	MinCount       int
	WarmupEvents   int
	WarmupTime     time.Duration
	Operations     []string
}

// Compile resolves cfg's detect section with its defaults. cfg is
// expected to have passed config validation; Compile still refuses what
// it cannot run (an unknown time zone, a bad glob).
func Compile(cfg *config.Config) (*Settings, error) {
	d := cfg.Detect.Resolve()
	loc, err := time.LoadLocation(d.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("detect: time_zone %q: %w", d.TimeZone, err)
	}
	s := &Settings{
		Enabled: *d.Enabled, QueueSize: d.QueueSize, Location: loc, MaxTokens: d.MaxTokens,
		SaveEvery: d.SaveEvery, Cooldown: d.Cooldown, MaxActionsPerMinute: d.MaxActionsPerMinute,
		Throttle:    ThrottleSettings{Requests: d.Throttle.Requests, Per: d.Throttle.Per, Duration: d.Throttle.Duration},
		Detectors:   map[string]DetectorSettings{},
		Credentials: map[string]string{},
	}
	for _, name := range config.DetectorNames() {
		c, _ := d.Detectors.Get(name)
		if !*c.Enabled {
			continue
		}
		for _, g := range c.Operations {
			if _, err := path.Match(g, ""); err != nil {
				return nil, fmt.Errorf("detect: %s: operation glob %q: %w", name, g, err)
			}
		}
		var warmup time.Duration
		if c.WarmupTime != nil {
			warmup = *c.WarmupTime
		}
		s.Detectors[name] = DetectorSettings{
			Severity: c.Severity, Actions: c.Actions, Factor: c.Factor, Window: c.Window, Threshold: c.Threshold,
			TotalThreshold: c.TotalThreshold, MinCount: c.MinCount, WarmupEvents: c.WarmupEvents,
			WarmupTime: warmup, Operations: c.Operations,
		}
	}
	for id, v := range cfg.Venues {
		s.Credentials[id] = v.Credential
	}
	ptr := func(name string) *DetectorSettings {
		if ds, ok := s.Detectors[name]; ok {
			return &ds
		}
		return nil
	}
	s.hot = hotSettings{orderRate: ptr(OrderRate), orderNotional: ptr(OrderNotional), orderSize: ptr(OrderSize),
		newInstrument: ptr(NewInstrument), offHours: ptr(OffHours), newSource: ptr(NewSource), authFailures: ptr(AuthFailures),
		policyDenials: ptr(PolicyDenials), venueErrors: ptr(VenueErrors), rateLimited: ptr(RateLimited),
		sensitive: ptr(SensitiveOps), concurrent: ptr(ConcurrentSources), adminHours: ptr(AdminHours)}
	return s, nil
}

// on returns detector name's settings and whether it is enabled.
func (s *Settings) on(name string) (DetectorSettings, bool) {
	ds, ok := s.Detectors[name]
	return ds, ok
}
