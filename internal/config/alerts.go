package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/secretref"
)

// Alerts configures where alerts go (alerts:). The zero value sends
// nothing; zero durations and sizes mean the defaults shown. The whole
// section is reloaded with the venues and policies (SIGHUP, file change).
type Alerts struct {
	// DedupeWindow (alerts.dedupe_window): after an alert for a
	// (detector, subject) pair goes out, further alerts for the same pair
	// within the window are counted and folded into one summary sent when
	// the window ends (an alert of higher severity goes out at once).
	// "0s" turns deduplication off. Default 10m.
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// RateLimit (alerts.rate_limit) caps the messages per (detector,
	// subject): "N/s", "N/m", "N/h" or "N/d", or "none". Alerts over the
	// limit are counted and summarised in the next message. Default "30/h".
	RateLimit string `yaml:"rate_limit"`
	// QueueSize (alerts.queue_size) bounds the alerts waiting to be
	// routed, and each sink's queue; a full queue drops (counted, and
	// reported to the sink once delivery recovers). 16..1000000. Default 1024.
	QueueSize int `yaml:"queue_size"`
	// Retry (alerts.retry) configures redelivery to a failing sink.
	Retry AlertRetry `yaml:"retry"`
	// Sinks (alerts.sinks) are the destinations; every alert goes to
	// every sink whose min_severity it reaches.
	Sinks []AlertSink `yaml:"sinks"`
}

// AlertRetry configures retries with jittered exponential backoff.
type AlertRetry struct {
	// MaxAttempts (retry.max_attempts) counts the first try; 1..20. Default 6.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialBackoff (retry.initial_backoff). Default 1s.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff (retry.max_backoff); >= initial_backoff. Default 1m.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxRetryAfter (retry.max_retry_after) caps a sink's Retry-After
	// (or Telegram retry_after). Default 5m.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
}

// Alert sink types accepted in alerts.sinks[].type.
const (
	SinkWebhook  = "webhook"
	SinkSlack    = "slack"
	SinkTelegram = "telegram"
	SinkNtfy     = "ntfy"
	SinkEmail    = "email"
)

// AlertSink is one destination of alerts.
type AlertSink struct {
	// Name (sinks[].name) identifies the sink in status, `keystile alert
	// test --sink` and the digest store. Required, unique, [a-z0-9][a-z0-9_-]{0,31}.
	Name string `yaml:"name"`
	// Type (sinks[].type) is webhook, slack, telegram, ntfy or email. Required.
	Type string `yaml:"type"`
	// MinSeverity (sinks[].min_severity): alerts below it are not sent
	// to this sink. info, low, medium, high or critical. Default info.
	MinSeverity string `yaml:"min_severity"`
	// Timeout (sinks[].timeout) bounds one delivery attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Digest (sinks[].digest), if set, batches low-severity alerts into
	// one message a day. Nil when absent.
	Digest *AlertDigest `yaml:"digest"`
	// Settings (sinks[].settings) are the type's own settings; a key that
	// the type does not use is an error.
	Settings AlertSinkSettings `yaml:"settings"`
}

// AlertDigest batches the alerts of a sink up to a severity into one
// daily message. Pending items are kept in the database and survive
// restarts; a digest missed while the server was down is sent at start.
type AlertDigest struct {
	// MaxSeverity (digest.max_severity): alerts of this severity or
	// lower wait for the digest. Default low.
	MaxSeverity string `yaml:"max_severity"`
	// At (digest.at) is the local time of day, "HH:MM". Default "08:00".
	At string `yaml:"at"`
	// TimeZone (digest.time_zone) is the IANA zone of At. Default UTC.
	TimeZone string `yaml:"time_zone"`
}

// AlertSinkSettings holds every sink type's settings; each type uses
// some of them (see the README). The *_ref values are secret references
// (env:VAR, file:PATH, dotenv:PATH#KEY, keyring:SERVICE/USER,
// vault:CREDENTIAL#FIELD), never secret values.
type AlertSinkSettings struct {
	// URL (settings.url): webhook receiver (webhook) or topic URL (ntfy).
	// https://, or http:// to a loopback host.
	URL string `yaml:"url"`
	// SecretRef (settings.secret_ref): webhook only, required; reference to the
	// HMAC-SHA256 key (at least 16 bytes).
	SecretRef string `yaml:"secret_ref"`
	// WebhookURLRef (settings.webhook_url_ref): slack only, required; reference
	// to the incoming-webhook URL (the URL itself is the credential).
	WebhookURLRef string `yaml:"webhook_url_ref"`
	// BotTokenRef (settings.bot_token_ref): telegram only, required; reference.
	BotTokenRef string `yaml:"bot_token_ref"`
	// ChatID (settings.chat_id): telegram only, required: a numeric chat
	// id or @channelusername.
	ChatID string `yaml:"chat_id"`
	// APIURL (settings.api_url): telegram only; default https://api.telegram.org.
	APIURL string `yaml:"api_url"`
	// TokenRef (settings.token_ref): ntfy only, optional; reference to an access token.
	TokenRef string `yaml:"token_ref"`
	// Host (settings.host): email only, required: the SMTP server.
	Host string `yaml:"host"`
	// Port (settings.port): email only; default 587 (465 with tls: implicit).
	Port int `yaml:"port"`
	// TLS (settings.tls): email only: starttls (default; the server must
	// offer STARTTLS) or implicit (TLS from the first byte, port 465).
	// There is no plaintext mode.
	TLS string `yaml:"tls"`
	// Username (settings.username): email only, optional SMTP AUTH user.
	Username string `yaml:"username"`
	// PasswordRef (settings.password_ref): email only; reference; required with username.
	PasswordRef string `yaml:"password_ref"`
	// From (settings.from): email only, required: the sender address.
	From string `yaml:"from"`
	// To (settings.to): email only, required: recipient addresses.
	To []string `yaml:"to"`
	// ServerName (settings.server_name): email only: the name verified in
	// the server's certificate. Default host.
	ServerName string `yaml:"server_name"`
	// CAFile (settings.ca_file): a PEM bundle trusted instead of the system
	// roots (webhook, ntfy, email).
	CAFile string `yaml:"ca_file"`
}

// DefaultAlerts returns the alerts: section's defaults.
func DefaultAlerts() Alerts {
	return Alerts{
		DedupeWindow: 10 * time.Minute, RateLimit: "30/h", QueueSize: 1024,
		Retry: AlertRetry{MaxAttempts: 6, InitialBackoff: time.Second, MaxBackoff: time.Minute, MaxRetryAfter: 5 * time.Minute},
	}
}

// Alert sink defaults applied by the app when a field is zero.
const (
	DefaultAlertTimeout   = 10 * time.Second
	DefaultDigestAt       = "08:00"
	DefaultDigestSeverity = "low"
	DefaultTelegramAPI    = "https://api.telegram.org"
	DefaultSMTPPort       = 587
	DefaultSMTPSPort      = 465
)

// Severities lists the alert severities, lowest first.
func Severities() []string { return []string{"info", "low", "medium", "high", "critical"} }

// ParseRate parses "N/s", "N/m", "N/h" or "N/d" into a count and its
// period; "none" (or "") is no limit (0, 0).
func ParseRate(s string) (int, time.Duration, error) {
	if s == "" || s == "none" {
		return 0, 0, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("want N/s, N/m, N/h, N/d or none, got %q", s)
	}
	count, err := strconv.Atoi(n)
	if err != nil || !digits(n) || count < 1 || count > 1_000_000 {
		return 0, 0, fmt.Errorf("count must be an integer 1..1000000, got %q", n)
	}
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[unit]
	if per == 0 {
		return 0, 0, fmt.Errorf("unit must be s, m, h or d, got %q", unit)
	}
	return count, per, nil
}

// ParseClock parses "HH:MM" (00:00..23:59).
func ParseClock(s string) (hour, minute int, err error) {
	if len(s) != 5 || s[2] != ':' || !digits(s[:2]) || !digits(s[3:]) {
		return 0, 0, fmt.Errorf("want HH:MM, got %q", s)
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, 0, fmt.Errorf("want HH:MM between 00:00 and 23:59, got %q", s)
	}
	return h, m, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

var sinkNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// sinkKeys lists, per sink type, the settings keys it accepts.
var sinkKeys = map[string][]string{
	SinkWebhook:  {"url", "secret_ref", "ca_file"},
	SinkSlack:    {"webhook_url_ref"},
	SinkTelegram: {"bot_token_ref", "chat_id", "api_url"},
	SinkNtfy:     {"url", "token_ref", "ca_file"},
	SinkEmail:    {"host", "port", "tls", "username", "password_ref", "from", "to", "server_name", "ca_file"},
}

func (ck *checker) alerts(a Alerts) {
	if a.DedupeWindow < 0 || a.DedupeWindow > 7*24*time.Hour {
		ck.add("alerts.dedupe_window", "must be between 0s (off) and 168h, got %s", a.DedupeWindow)
	}
	if _, _, err := ParseRate(a.RateLimit); err != nil {
		ck.add("alerts.rate_limit", "%v", err)
	}
	if a.QueueSize < 0 || a.QueueSize > 1_000_000 || (a.QueueSize < 16 && (a.QueueSize != 0 || ck.d.present("alerts.queue_size"))) {
		ck.add("alerts.queue_size", "must be between 16 and 1000000, got %d", a.QueueSize)
	}
	r := a.Retry
	if r.MaxAttempts < 0 || r.MaxAttempts > 20 || (r.MaxAttempts == 0 && ck.d.present("alerts.retry.max_attempts")) {
		ck.add("alerts.retry.max_attempts", "must be between 1 and 20, got %d", r.MaxAttempts)
	}
	ck.positive("alerts.retry.initial_backoff", r.InitialBackoff)
	ck.positive("alerts.retry.max_backoff", r.MaxBackoff)
	ck.positive("alerts.retry.max_retry_after", r.MaxRetryAfter)
	def := DefaultAlerts().Retry
	if ib, mb := or(r.InitialBackoff, def.InitialBackoff), or(r.MaxBackoff, def.MaxBackoff); ib > 0 && mb > 0 && mb < ib {
		ck.add("alerts.retry.max_backoff", "must be >= retry.initial_backoff (%s), got %s", ib, mb)
	}
	seen := map[string]int{}
	for i, s := range a.Sinks {
		p := fmt.Sprintf("alerts.sinks[%d]", i)
		switch {
		case s.Name == "":
			ck.add(p+".name", "required")
		case !sinkNameRE.MatchString(s.Name):
			ck.add(p+".name", "invalid sink name %q: must match [a-z0-9][a-z0-9_-]{0,31}", s.Name)
		default:
			if j, dup := seen[s.Name]; dup {
				ck.add(p+".name", "duplicate sink name %q (also alerts.sinks[%d])", s.Name, j)
			}
			seen[s.Name] = i
		}
		ck.alertSink(p, s)
	}
}

func (ck *checker) alertSink(p string, s AlertSink) {
	types := []string{SinkWebhook, SinkSlack, SinkTelegram, SinkNtfy, SinkEmail}
	allowed, ok := sinkKeys[s.Type]
	switch {
	case s.Type == "":
		ck.add(p+".type", "required (%s)", strings.Join(types, "|"))
	case !ok:
		msg := fmt.Sprintf("must be one of %s, got %q", strings.Join(types, "|"), s.Type)
		if sg := Suggest(s.Type, types); sg != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", sg)
		}
		ck.add(p+".type", "%s", msg)
	}
	ck.oneOf(p+".min_severity", s.MinSeverity, Severities()...)
	ck.positive(p+".timeout", s.Timeout)
	if s.Timeout > 5*time.Minute {
		ck.add(p+".timeout", "must be at most 5m, got %s", s.Timeout)
	}
	if d := s.Digest; d != nil {
		ck.oneOf(p+".digest.max_severity", d.MaxSeverity, Severities()...)
		if d.At != "" {
			if _, _, err := ParseClock(d.At); err != nil {
				ck.add(p+".digest.at", "%v", err)
			}
		}
		if d.TimeZone != "" {
			if _, err := time.LoadLocation(d.TimeZone); err != nil || strings.EqualFold(d.TimeZone, "local") {
				ck.add(p+".digest.time_zone", "unknown IANA time zone %q", d.TimeZone)
			}
		}
	}
	if !ok {
		return
	}
	st := s.Settings
	sp := p + ".settings"
	// Keys this type does not use.
	for _, f := range []struct {
		key string
		set bool
	}{
		{"url", st.URL != ""}, {"secret_ref", st.SecretRef != ""}, {"webhook_url_ref", st.WebhookURLRef != ""},
		{"bot_token_ref", st.BotTokenRef != ""}, {"chat_id", st.ChatID != ""}, {"api_url", st.APIURL != ""},
		{"token_ref", st.TokenRef != ""}, {"host", st.Host != ""}, {"port", st.Port != 0}, {"tls", st.TLS != ""},
		{"username", st.Username != ""}, {"password_ref", st.PasswordRef != ""}, {"from", st.From != ""},
		{"to", len(st.To) > 0}, {"server_name", st.ServerName != ""}, {"ca_file", st.CAFile != ""},
	} {
		if f.set && !slices.Contains(allowed, f.key) {
			ck.add(sp+"."+f.key, "not used by sink type %s (it takes: %s)", s.Type, strings.Join(allowed, ", "))
		}
	}
	required := func(key, v string) bool {
		if v == "" {
			ck.add(sp+"."+key, "required for sink type %s", s.Type)
			return false
		}
		return true
	}
	switch s.Type {
	case SinkWebhook:
		if required("url", st.URL) {
			ck.sinkURL(sp+".url", st.URL)
		}
		if required("secret_ref", st.SecretRef) {
			ck.secretRef(sp+".secret_ref", st.SecretRef)
		}
	case SinkSlack:
		if required("webhook_url_ref", st.WebhookURLRef) {
			ck.secretRef(sp+".webhook_url_ref", st.WebhookURLRef)
		}
	case SinkTelegram:
		if required("bot_token_ref", st.BotTokenRef) {
			ck.secretRef(sp+".bot_token_ref", st.BotTokenRef)
		}
		if required("chat_id", st.ChatID) && !telegramChat.MatchString(st.ChatID) {
			ck.add(sp+".chat_id", "must be a numeric chat id (e.g. -1001234567890) or @channelusername, got %q", st.ChatID)
		}
		ck.sinkURL(sp+".api_url", st.APIURL)
	case SinkNtfy:
		if required("url", st.URL) {
			ck.sinkURL(sp+".url", st.URL)
		}
		if st.TokenRef != "" {
			ck.secretRef(sp+".token_ref", st.TokenRef)
		}
	case SinkEmail:
		if required("host", st.Host) && (strings.ContainsAny(st.Host, "/@:?# \t\r\n") || len(st.Host) > 253) {
			ck.add(sp+".host", "must be a bare host name or IP address, got %q", st.Host)
		}
		if st.Port < 0 || st.Port > 65535 || (st.Port == 0 && ck.d.present(sp+".port")) {
			ck.add(sp+".port", "must be a TCP port 1..65535, got %d", st.Port)
		}
		ck.oneOf(sp+".tls", st.TLS, "starttls", "implicit")
		if st.Username != "" && st.PasswordRef == "" {
			ck.add(sp+".password_ref", "required with username (a secret reference)")
		}
		if st.PasswordRef != "" {
			if st.Username == "" {
				ck.add(sp+".username", "required with password_ref")
			}
			ck.secretRef(sp+".password_ref", st.PasswordRef)
		}
		if required("from", st.From) {
			ck.address(sp+".from", st.From)
		}
		if len(st.To) == 0 {
			ck.add(sp+".to", "required for sink type email: at least one address")
		}
		for i, to := range st.To {
			ck.address(fmt.Sprintf("%s.to[%d]", sp, i), to)
		}
		if strings.ContainsAny(st.ServerName, "/@:?# \t\r\n") {
			ck.add(sp+".server_name", "must be a host name, got %q", st.ServerName)
		}
	}
}

var telegramChat = regexp.MustCompile(`^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$`)

// secretRef checks that v is a secret reference. The message never
// repeats v: a value written where a reference belongs may be the secret.
func (ck *checker) secretRef(key, v string) {
	if _, err := secretref.Parse(v); err != nil {
		ck.add(key, "must be a secret reference (env:VAR, file:PATH, dotenv:PATH#KEY, keyring:SERVICE/USER or vault:CREDENTIAL#FIELD), never the secret itself")
	}
}

// sinkURL checks a sink URL: https://, or http:// to a loopback host; no
// userinfo or fragment (a query is allowed: some receivers take one).
func (ck *checker) sinkURL(key, raw string) {
	if raw == "" {
		return
	}
	if err := checkSinkURL(raw); err != nil {
		ck.add(key, "%v", err)
	}
}

// checkSinkURL is the rule every alert sink URL follows (alert.CheckURL
// applies the same one at run time, also to URLs read from secret
// references): absolute, https:// — or http:// to a loopback host
// (127.0.0.0/8, ::1, localhost) —, no userinfo, no fragment. Its errors
// never repeat the URL's path or query.
func checkSinkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL")
	}
	if u.User != nil {
		return fmt.Errorf("must not contain userinfo (use a secret reference for credentials)")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("must not contain a fragment")
	}
	if u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
		return fmt.Errorf("must be an absolute URL with a host")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("must be https:// (plain http only to a loopback host, got host %q)", u.Hostname())
		}
	default:
		return fmt.Errorf("must be https:// (plain http only to a loopback host)")
	}
	return nil
}

func (ck *checker) address(key, v string) {
	a, err := mail.ParseAddress(v)
	if err != nil || strings.ContainsAny(v, "\r\n") || a.Address == "" {
		ck.add(key, "must be an e-mail address, got %q", v)
	}
}
