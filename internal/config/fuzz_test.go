package config

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// FuzzParse: Parse never panics; it returns either a Config that
// re-validates, or errors each of which has a line or is file-level.
func FuzzParse(f *testing.F) {
	if ex, err := os.ReadFile("testdata/keystile.example.yaml"); err == nil {
		f.Add(ex)
	}
	for _, s := range []string{
		"", "log: {}\n", base,
		base + "    timeouts:\n      totl: 5s\n",
		"log:\n  level: info\n  level: debug\n",
		"tokens:\n  default_ttl: 48h\n  max_ttl: 24h\n",
		"admin:\n  allowed_uids: [1000, -1]\n",
		"admin:\n  listen: 127.0.0.1:7879\n  allow_cidrs: [10.0.0.0/8, \"::ffff:1.2.3.4\"]\n  tokens:\n    - {name: a, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}\n  mfa: {session_ttl: 2m, max_failures: 3, lockout: 1s, max_lockout: 1m, issuer: x}\n",
		"venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: hmac\n      hmac: {signature_header: X, template: \"{x}\"}\n",
		"x: &x {level: info}\nlog:\n  <<: *x\n",
		"log: {}\n---\nlog: {}\n",
		"venues:\n  a: &v {type: dmarket, credential: c, base_url: https://a.example}\n  b: *v\n",
		"alerts:\n  rate_limit: 3/x\n  sinks:\n    - {name: a, type: email, settings: {host: h, from: a@b.c, to: [a@b.c], port: 0}}\n",
		"alerts:\n  sinks:\n    - {name: a, type: webhook, digest: {at: \"7:00\"}, settings: {url: \"http://[::1]/x\", secret_ref: env:K}}\n",
		"gateway: [1, 2]\n", "- a\n", "\"\n", "{{{{", "venues: {x: }\n",
		"detect:\n  detectors:\n    order_size: {factor: 2.5, actions: [alert, freeze]}\n",
		"detect:\n  detectors:\n    order_rate: {factor: .inf}\n    order_size: {factor: .nan}\n    new_source: {factor: 1e400}\n",
		"detect:\n  detectors:\n    off_hours: {warmup_time: 0s, enabled: false}\n  time_zone: Asia/Tokyo\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			if verr := c.Validate(); verr != nil {
				t.Fatalf("parsed config does not re-validate: %v", verr)
			}
			return
		}
		if c != nil {
			t.Fatal("config with error")
		}
		errs := Errors(err)
		if len(errs) == 0 {
			t.Fatalf("error is not a config.Error: %v", err)
		}
		for _, e := range errs {
			if e.Line <= 0 && e.Key != "" {
				t.Fatalf("keyed error without a line: %#v", e)
			}
			if e.File != "f.yaml" {
				t.Fatalf("error without file: %#v", e)
			}
		}
	})
}

// FuzzAlertValues: the alerts section's value parsers never panic, and
// what they accept is in range and formats back to itself.
func FuzzAlertValues(f *testing.F) {
	for _, s := range []string{"30/h", "1/s", "1000000/d", "none", "", "0/h", "10/w", "/h", "5", "08:00", "23:59", "24:00", "7:00", "ab:cd", "-1:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, per, err := ParseRate(s); err == nil && (s != "" && s != "none") {
			if n < 1 || n > 1_000_000 || per <= 0 {
				t.Fatalf("ParseRate(%q) = %d, %s", s, n, per)
			}
			unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h", 24 * time.Hour: "d"}[per]
			if n2, per2, err := ParseRate(fmt.Sprintf("%d/%s", n, unit)); err != nil || n2 != n || per2 != per {
				t.Fatalf("round trip of %q: %d %s %v", s, n2, per2, err)
			}
		}
		if h, m, err := ParseClock(s); err == nil {
			if h < 0 || h > 23 || m < 0 || m > 59 || fmt.Sprintf("%02d:%02d", h, m) != s {
				t.Fatalf("ParseClock(%q) = %d:%d", s, h, m)
			}
		}
	})
}
