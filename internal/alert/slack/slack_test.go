package slack_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/slack"
	"github.com/keystile/keystile/internal/secret"
)

func a() *alert.Alert {
	return &alert.Alert{ID: "alr_s1", Kind: alert.KindAlert, Time: time.Unix(1767323045, 0), Detector: "detect.new_ip", Severity: alert.SeverityHigh,
		Subject: alert.Subject{Token: "tok_1"}, Summary: "new address <!channel> & <https://evil.example|click>", Count: 1}
}

// TestDeliver: the message reaches a real server at the webhook path,
// escaped for mrkdwn; Slack's answers map to retryable or permanent
// failures carrying Slack's error code.
func TestDeliver(t *testing.T) {
	var got []slack.Message
	status, answer := http.StatusOK, "ok"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/services/T000/B000/XXXX" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var m slack.Message
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		got = append(got, m)
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "30")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	s, err := slack.New(slack.Options{URL: func(context.Context) (secret.Value, error) {
		return secret.FromString(srv.URL + "/services/T000/B000/XXXX"), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), a()); err != nil {
		t.Fatal(err)
	}
	text := got[0].Text
	if strings.ContainsAny(strings.ReplaceAll(strings.ReplaceAll(text, "&lt;", ""), "&gt;", ""), "<>") || !strings.Contains(text, "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;") {
		t.Fatalf("not escaped: %s", text)
	}
	if !strings.HasPrefix(text, "*keystile HIGH: detect.new_ip (token tok_1)*") || !got[0].Mrkdwn {
		t.Fatalf("text %q", text)
	}
	for _, tt := range []struct {
		status    int
		answer    string
		permanent bool
		retry     time.Duration
	}{
		{http.StatusNotFound, "channel_not_found", true, 0},
		{http.StatusForbidden, "action_prohibited", true, 0},
		{http.StatusTooManyRequests, "rate_limited", false, 30 * time.Second},
		{http.StatusInternalServerError, "<html>oops</html>", false, 0},
	} {
		status, answer = tt.status, tt.answer
		err := s.Deliver(context.Background(), a())
		var de *alert.DeliveryError
		if !errors.As(err, &de) || de.Permanent != tt.permanent || de.RetryAfter != tt.retry || de.Status != tt.status {
			t.Fatalf("%d: %#v", tt.status, err)
		}
		if tt.permanent && !strings.Contains(err.Error(), tt.answer) {
			t.Fatalf("%d: error lacks Slack's code: %v", tt.status, err)
		}
		if strings.Contains(err.Error(), "XXXX") {
			t.Fatalf("error shows the webhook URL: %v", err)
		}
	}
}

// TestURLRule: a webhook URL from the secret store must be https (or
// loopback); the refusal does not repeat it.
func TestURLRule(t *testing.T) {
	s, _ := slack.New(slack.Options{URL: func(context.Context) (secret.Value, error) {
		return secret.FromString("http://hooks.slack.com/services/T/B/SECRETPART"), nil
	}})
	err := s.Deliver(context.Background(), a())
	var de *alert.DeliveryError
	if !errors.As(err, &de) || !de.Permanent || strings.Contains(err.Error(), "SECRETPART") {
		t.Fatalf("err %v", err)
	}
}
