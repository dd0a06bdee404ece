package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestExampleDetectIsTheDefault: the example file's detect section, which
// documents every key, resolves to the same settings as an empty one.
func TestExampleDetectIsTheDefault(t *testing.T) {
	c, err := Load("testdata/keystile.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, want := c.Detect.Resolve(), Detect{}.Resolve()
	// Per-detector actions resolve from the severity defaults either way.
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("example detect section differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	for _, name := range DetectorNames() {
		d, _ := want.Detectors.Get(name)
		if d.Enabled == nil || !*d.Enabled || d.Severity == "" || d.Actions == nil {
			t.Errorf("%s: default %+v", name, d)
		}
		for _, k := range DetectorKeys(name) {
			if !strings.Contains(readExample(t), name+": {") {
				t.Errorf("example lacks detector %s (%s)", name, k)
			}
		}
	}
}

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/keystile.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDetectConfig: values and their positioned errors.
func TestDetectConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		errs       []string // "line:col key: message part"
	}{
		{"empty", "detect: {}\n", nil},
		{"overrides", "detect:\n  time_zone: Europe/London\n  actions: {critical: [alert, freeze]}\n  detectors:\n    order_size: {factor: 2.5, actions: []}\n    off_hours: {enabled: false, warmup_time: 0s}\n", nil},
		{"unknown detector", "detect:\n  detectors:\n    ordr_size: {}\n", []string{`3:5 detect.detectors.ordr_size: unknown key "ordr_size" (did you mean "order_size"?)`}},
		{"key a detector does not use", "detect:\n  detectors:\n    order_rate:\n      threshold: 3\n", []string{"4:7 detect.detectors.order_rate.threshold: not used by order_rate"}},
		{"factor range", "detect:\n  detectors:\n    order_size: {factor: 1}\n    order_rate: {factor: 1001}\n", []string{
			"3:18 detect.detectors.order_size.factor: must be above 1", "4:18 detect.detectors.order_rate.factor: must be above 1"}},
		{"factor not a number", "detect:\n  detectors:\n    order_size: {factor: two}\n", []string{"3:18 detect.detectors.order_size.factor: must be a number"}},
		{"unknown action", "detect:\n  actions:\n    info: [alert, page]\n", []string{`3:19 detect.actions.info[1]: must be one of alert|throttle|freeze|freeze_credential|freeze_venue|kill, got "page"`}},
		{"duplicate action", "detect:\n  detectors:\n    order_size: {actions: [alert, alert]}\n", []string{`detect.detectors.order_size.actions[1]: duplicate action "alert"`}},
		{"freeze on a finding without a token", "detect:\n  detectors:\n    auth_failures: {actions: [freeze]}\n    admin_hours: {actions: [freeze_venue]}\n", []string{
			"detect.detectors.auth_failures.actions[0]: auth_failures findings are not about a token: freeze cannot apply",
			"detect.detectors.admin_hours.actions[0]: admin_hours findings are not about a venue: freeze_venue cannot apply"}},
		{"venue freeze on venue errors is fine", "detect:\n  detectors:\n    venue_errors: {actions: [freeze_venue, freeze_credential]}\n", nil},
		{"severity", "detect:\n  detectors:\n    new_source: {severity: high}\n", []string{`3:18 detect.detectors.new_source.severity: must be one of info|warning|critical, got "high"`}},
		{"time zone", "detect:\n  time_zone: Mars/Olympus\n", []string{`2:3 detect.time_zone: unknown IANA time zone "Mars/Olympus"`}},
		{"explicit zeros", "detect:\n  queue_size: 0\n  cooldown: 0s\n  detectors:\n    policy_denials: {threshold: 0, window: 0s}\n", []string{
			"2:3 detect.queue_size: must be between 1 and 1048576, got 0", "3:3 detect.cooldown: must be positive",
			"5:22 detect.detectors.policy_denials.threshold: must be between 1 and 1000000", "5:36 detect.detectors.policy_denials.window: must be positive"}},
		{"ranges", "detect:\n  throttle: {requests: 0, per: 48h, duration: 1000h}\n  detectors:\n    order_rate: {warmup_time: -1h}\n    concurrent_sources: {window: 2h}\n", []string{
			"detect.throttle.requests: must be between 1 and 1000000", "detect.throttle.per: must be at most 24h0m0s",
			"detect.throttle.duration: must be at most 720h0m0s", "detect.detectors.order_rate.warmup_time: must be between 0s and 2160h",
			"detect.detectors.concurrent_sources.window: must be at most 1h"}},
		{"operations", "detect:\n  detectors:\n    sensitive_operations: {operations: []}\n", []string{"detect.detectors.sensitive_operations.operations: must list at least one"}},
		{"bad glob", "detect:\n  detectors:\n    sensitive_operations: {operations: [\"wallet.[\"]}\n", []string{`detect.detectors.sensitive_operations.operations[0]: invalid operation glob "wallet.["`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("d.yaml", []byte(tc.yaml))
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				r := c.Detect.Resolve()
				if _, ok := r.Detectors.Get(DetOrderSize); !ok {
					t.Fatal("no order_size")
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.errs)
			}
			var got []string
			for _, e := range Errors(err) {
				if e.File != "d.yaml" || e.Line == 0 {
					t.Errorf("error without a position: %v", e)
				}
				got = append(got, fmt.Sprintf("%d:%d %s: %s", e.Line, e.Column, e.Key, e.Msg))
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.errs {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in:\n%s", w, all)
				}
			}
			if len(got) != len(tc.errs) {
				t.Errorf("%d errors, want %d:\n%s", len(got), len(tc.errs), all)
			}
		})
	}
}

// TestDetectResolve: overrides keep the rest of the defaults.
func TestDetectResolve(t *testing.T) {
	c, err := Parse("d.yaml", []byte("detect:\n  actions: {warning: [alert, throttle]}\n  detectors:\n    order_size: {factor: 2.5, actions: []}\n    off_hours: {enabled: false, warmup_time: 0s}\n    new_source: {severity: critical}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Detect.Resolve()
	if r.Detectors.OrderSize.Factor != 2.5 || r.Detectors.OrderSize.WarmupEvents != 20 || len(r.Detectors.OrderSize.Actions) != 0 || r.Detectors.OrderSize.Actions == nil {
		t.Errorf("order_size %+v", r.Detectors.OrderSize)
	}
	if *r.Detectors.OffHours.Enabled || *r.Detectors.OffHours.WarmupTime != 0 {
		t.Errorf("off_hours %+v", r.Detectors.OffHours)
	}
	if !reflect.DeepEqual(r.Detectors.NewSource.Actions, []string{ActionAlert, ActionThrottle}) {
		t.Errorf("new_source (critical) actions %v, want the critical default", r.Detectors.NewSource.Actions)
	}
	if !reflect.DeepEqual(r.Detectors.PolicyDenials.Actions, []string{ActionAlert, ActionThrottle}) {
		t.Errorf("policy_denials (warning) actions %v, want detect.actions.warning", r.Detectors.PolicyDenials.Actions)
	}
	if r.Throttle.Per != time.Minute || r.QueueSize != 8192 {
		t.Errorf("resolved %+v", r)
	}
}
