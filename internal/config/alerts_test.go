package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/config"
)

const alertsYAML = `alerts:
  dedupe_window: 5m
  rate_limit: 10/h
  queue_size: 256
  retry: {max_attempts: 4, initial_backoff: 2s, max_backoff: 30s}
  sinks:
    - name: ops-hook
      type: webhook
      min_severity: medium
      timeout: 5s
      digest: {max_severity: low, at: "07:30", time_zone: Europe/London}
      settings:
        url: https://hooks.example.com/keystile
        secret_ref: env:KEYSTILE_WEBHOOK_KEY
    - name: team-slack
      type: slack
      settings: {webhook_url_ref: "file:/run/secrets/slack-url"}
    - name: tg
      type: telegram
      settings: {bot_token_ref: "vault:alerts#bot_token", chat_id: "-1001234567890"}
    - name: phone
      type: ntfy
      settings: {url: "https://ntfy.example.com/keystile", token_ref: "dotenv:/etc/keystile/alerts.env#NTFY_TOKEN"}
    - name: mail
      type: email
      settings:
        host: smtp.example.com
        username: keystile
        password_ref: keyring:keystile/smtp
        from: keystile <alerts@example.com>
        to: [ops@example.com]
`

func TestAlertsParse(t *testing.T) {
	c, err := config.Parse("keystile.yaml", []byte(alertsYAML))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Alerts
	if a.DedupeWindow != 5*time.Minute || a.RateLimit != "10/h" || a.QueueSize != 256 || a.Retry.MaxAttempts != 4 ||
		a.Retry.MaxRetryAfter != 5*time.Minute || len(a.Sinks) != 5 {
		t.Fatalf("alerts %+v", a)
	}
	if s := a.Sinks[0]; s.Digest == nil || s.Digest.At != "07:30" || s.Settings.SecretRef != "env:KEYSTILE_WEBHOOK_KEY" || s.MinSeverity != "medium" {
		t.Fatalf("sink 0 %+v", s)
	}
	d := config.Default().Alerts
	if d.DedupeWindow != 10*time.Minute || d.RateLimit != "30/h" || d.QueueSize != 1024 || d.Retry.MaxAttempts != 6 {
		t.Fatalf("defaults %+v", d)
	}
	if c, err := config.Parse("k.yaml", []byte("alerts:\n  dedupe_window: 0s\n  rate_limit: none\n")); err != nil || c.Alerts.DedupeWindow != 0 {
		t.Fatalf("off: %v", err)
	}
}

// TestAlertsErrors: every mistake is reported with file, line, column and
// key; a value written where a secret reference belongs is never echoed.
func TestAlertsErrors(t *testing.T) {
	sink := func(body string) string { return "alerts:\n  sinks:\n    - name: s\n" + body }
	tests := []struct {
		name, yaml, want string
	}{
		{"bad rate", "alerts:\n  rate_limit: 10/week\n", `keystile.yaml:2:3: alerts.rate_limit: unit must be s, m, h or d, got "week"`},
		{"negative window", "alerts:\n  dedupe_window: -1s\n", `keystile.yaml:2:3: alerts.dedupe_window: must be between 0s (off) and 168h`},
		{"tiny queue", "alerts:\n  queue_size: 0\n", `keystile.yaml:2:3: alerts.queue_size: must be between 16 and 1000000, got 0`},
		{"backoff order", "alerts:\n  retry: {initial_backoff: 10s, max_backoff: 1s}\n", `alerts.retry.max_backoff: must be >= retry.initial_backoff (10s), got 1s`},
		{"no type", sink(""), `keystile.yaml:3:11: alerts.sinks[0].type: required (webhook|slack|telegram|ntfy|email)`},
		{"typo type", sink("      type: slak\n"), `keystile.yaml:4:7: alerts.sinks[0].type: must be one of webhook|slack|telegram|ntfy|email, got "slak" (did you mean "slack"?)`},
		{"unknown key", sink("      type: slack\n      settings: {webhook_url: x}\n"), `keystile.yaml:5:18: alerts.sinks[0].settings.webhook_url: unknown key "webhook_url"`},
		{"key of another type", sink("      type: slack\n      settings: {webhook_url_ref: env:X, chat_id: \"1\"}\n"), `keystile.yaml:5:42: alerts.sinks[0].settings.chat_id: not used by sink type slack (it takes: webhook_url_ref)`},
		{"plain secret", sink("      type: webhook\n      settings: {url: \"https://h.example/x\", secret_ref: \"hunter2:supersecret\"}\n"), `alerts.sinks[0].settings.secret_ref: must be a secret reference`},
		{"http url", sink("      type: webhook\n      settings: {url: \"http://h.example/x\", secret_ref: env:K}\n"), `alerts.sinks[0].settings.url: must be https:// (plain http only to a loopback host, got host "h.example")`},
		{"userinfo", sink("      type: ntfy\n      settings: {url: \"https://u:p@ntfy.example/t\"}\n"), `alerts.sinks[0].settings.url: must not contain userinfo`},
		{"chat id", sink("      type: telegram\n      settings: {bot_token_ref: env:T, chat_id: \"my chat\"}\n"), `alerts.sinks[0].settings.chat_id: must be a numeric chat id`},
		{"email needs", sink("      type: email\n      settings: {host: smtp.example.com}\n"), `alerts.sinks[0].settings.from: required for sink type email`},
		{"email bad to", sink("      type: email\n      settings: {host: h, from: a@b.c, to: [\"x\\r\\nBcc: y@z\"]}\n"), `alerts.sinks[0].settings.to[0]: must be an e-mail address`},
		{"email tls", sink("      type: email\n      settings: {host: h, from: a@b.c, to: [a@b.c], tls: none}\n"), `alerts.sinks[0].settings.tls: must be one of starttls|implicit, got "none"`},
		{"user without password", sink("      type: email\n      settings: {host: h, from: a@b.c, to: [a@b.c], username: u}\n"), `alerts.sinks[0].settings.password_ref: required with username`},
		{"digest time", sink("      type: slack\n      digest: {at: \"25:00\"}\n      settings: {webhook_url_ref: env:X}\n"), `alerts.sinks[0].digest.at: want HH:MM between 00:00 and 23:59, got "25:00"`},
		{"digest zone", sink("      type: slack\n      digest: {time_zone: Mars/Olympus}\n      settings: {webhook_url_ref: env:X}\n"), `alerts.sinks[0].digest.time_zone: unknown IANA time zone "Mars/Olympus"`},
		{"severity", sink("      type: slack\n      min_severity: urgent\n      settings: {webhook_url_ref: env:X}\n"), `alerts.sinks[0].min_severity: must be one of info|low|medium|high|critical, got "urgent"`},
		{"duplicate name", "alerts:\n  sinks:\n    - {name: a, type: slack, settings: {webhook_url_ref: env:X}}\n    - {name: a, type: slack, settings: {webhook_url_ref: env:X}}\n", `alerts.sinks[1].name: duplicate sink name "a" (also alerts.sinks[0])`},
		{"bad name", "alerts:\n  sinks:\n    - {name: Ops Hook, type: slack, settings: {webhook_url_ref: env:X}}\n", `alerts.sinks[0].name: invalid sink name "Ops Hook"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("keystile.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "supersecret") || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error repeats a secret value: %v", err)
			}
			for _, e := range config.Errors(err) {
				if e.Line == 0 {
					t.Fatalf("unpositioned error %v", e)
				}
			}
		})
	}
}
