package config

import (
	"os"
	"testing"
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
		"venues:\n  g:\n    type: generic\n    credential: c\n    base_url: https://a.example\n    auth:\n      scheme: hmac\n      hmac: {signature_header: X, template: \"{x}\"}\n",
		"x: &x {level: info}\nlog:\n  <<: *x\n",
		"log: {}\n---\nlog: {}\n",
		"venues:\n  a: &v {type: dmarket, credential: c, base_url: https://a.example}\n  b: *v\n",
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
