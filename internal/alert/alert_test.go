package alert_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
)

// sent returns what a Dispatcher made of a, as the webhook receiver got it.
func sent(t *testing.T, a alert.Alert, sc alert.Scrubber) alert.Alert {
	t.Helper()
	r := newReceiver(t)
	d := newDispatcher(t, alert.Options{Sinks: []alert.SinkConfig{r.sink(t, "w")}, Scrubber: sc})
	d.Send(a)
	return r.waitFor("the alert", func(g []received) bool { return len(g) == 1 })[0].Alert
}

func TestSendNormalizes(t *testing.T) {
	red := logging.NewRedactor()
	red.Register(secret.FromString("CANARY-venue-secret-5d1f0a"))
	tok := "kst_live_" + strings.Repeat("A1b2", 11) + "xyz012"
	a := alert.Alert{
		ID: "not a valid id!", Detector: "Detect/Order Size", Severity: 0,
		Subject: alert.Subject{Token: "tok_1\nFAKE: line", Venue: "binance"},
		Summary: "leaked CANARY-venue-secret-5d1f0a and " + tok + "\r\nInjected-Header: x\u202e\u200b",
		Evidence: []alert.Field{
			{Key: "password", Value: "hunter2-not-registered"}, {Key: "Api-Key", Value: "k"},
			{Key: "notional", Value: strings.Repeat("9", 1000)},
		},
		Action: "freeze",
	}
	got := sent(t, a, red)
	if !strings.HasPrefix(got.ID, "alr_") || got.Detector != "detect_order_size" || got.Severity != alert.SeverityHigh {
		t.Fatalf("id %q detector %q severity %v", got.ID, got.Detector, got.Severity)
	}
	if strings.Contains(got.Summary, "CANARY") || strings.Contains(got.Summary, tok) || !strings.Contains(got.Summary, "kst_live_REDACTED") {
		t.Fatalf("summary not scrubbed: %q", got.Summary)
	}
	for _, s := range []string{got.Summary, got.Subject.Token} {
		if strings.ContainsAny(s, "\r\n\u202e\u200b") {
			t.Fatalf("control or format characters kept: %q", s)
		}
	}
	if got.Evidence[0].Value != "REDACTED" || got.Evidence[1].Value != "REDACTED" {
		t.Fatalf("sensitive evidence kept: %+v", got.Evidence)
	}
	if v := got.Evidence[2].Value; len(v) > alert.MaxEvidenceValue || !strings.HasSuffix(v, "…") || !utf8.ValidString(v) {
		t.Fatalf("long value not bounded: %d bytes", len(v))
	}
}

func TestSendBoundsEvidence(t *testing.T) {
	a := alert.Alert{Detector: "d", Severity: alert.SeverityLow, Summary: strings.Repeat("é", 2000)}
	for range 40 {
		a.Evidence = append(a.Evidence, alert.Field{Key: "k", Value: "v"})
	}
	got := sent(t, a, nil)
	if len(got.Evidence) != alert.MaxEvidence+1 || got.Evidence[alert.MaxEvidence].Value != "8 more" {
		t.Fatalf("evidence %d entries, last %+v", len(got.Evidence), got.Evidence[len(got.Evidence)-1])
	}
	if len(got.Summary) > alert.MaxSummary || !utf8.ValidString(got.Summary) {
		t.Fatalf("summary %d bytes, valid %v", len(got.Summary), utf8.ValidString(got.Summary))
	}
}

func TestSeverity(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want alert.Severity
		err  bool
	}{
		{"info", alert.SeverityInfo, false}, {"critical", alert.SeverityCritical, false},
		{"HIGH", 0, true}, {"", 0, true}, {"invalid", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := alert.ParseSeverity(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("ParseSeverity(%q) = %v, %v", tt.in, got, err)
			}
			if !tt.err {
				b, err := got.MarshalText()
				if err != nil || string(b) != tt.in {
					t.Fatalf("MarshalText = %q, %v", b, err)
				}
			}
		})
	}
	if _, err := alert.Severity(9).MarshalText(); err == nil {
		t.Fatal("invalid severity marshalled")
	}
}

func TestTextFitsLimit(t *testing.T) {
	a := alert.Alert{ID: "alr_x", Kind: alert.KindDigest, Summary: "digest", Severity: alert.SeverityLow, Time: time.Unix(0, 0)}
	for range 300 {
		a.Items = append(a.Items, alert.Alert{Detector: "detect.x", Severity: alert.SeverityLow, Summary: strings.Repeat("s", 80), Count: 1})
	}
	for _, limit := range []int{100, 4096, 12000} {
		s := alert.Text(&a, limit)
		if len(s) > limit || !strings.HasSuffix(s, "alert id: alr_x") || !strings.Contains(s, "not shown") {
			t.Fatalf("limit %d: %d bytes, tail %q", limit, len(s), s[max(0, len(s)-80):])
		}
	}
	if s := alert.Text(&a, 0); strings.Contains(s, "not shown") {
		t.Fatal("unlimited text truncated")
	}
}

func TestCheckURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/x?y=1", true},
		{"http://127.0.0.1:8080/hook", true},
		{"http://[::1]:9/hook", true},
		{"http://localhost/hook", true},
		{"http://hooks.example.com/hook", false},
		{"http://10.0.0.1/hook", false},
		{"https://user:pass@hooks.example.com/", false},
		{"https://hooks.example.com/#frag", false},
		{"ftp://hooks.example.com/", false},
		{"/relative", false},
		{"https://", false},
		{"::", false},
	} {
		t.Run(tt.url, func(t *testing.T) {
			_, err := alert.CheckURL(tt.url)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckURL(%q) = %v", tt.url, err)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Fatalf("error repeats the URL: %v", err)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-3", 0}, {"7", 7 * time.Second}, {"999999", 24 * time.Hour}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second}, {now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := alert.RetryAfter(tt.in, now); got != tt.want {
			t.Errorf("RetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestDoHidesURL: a transport error never carries the request URL, which
// for Slack and Telegram is the credential.
func TestDoHidesURL(t *testing.T) {
	hc, err := alert.NewHTTPClient(alert.HTTPOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	secretPath := "/bot123456:CANARY-telegram-token-xyz/sendMessage"
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://127.0.0.1:1"+secretPath, nil)
	_, err = alert.Do(hc, req)
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("err = %v", err)
	}
}
