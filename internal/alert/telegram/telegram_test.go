package telegram_test

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
	"github.com/keystile/keystile/internal/alert/telegram"
	"github.com/keystile/keystile/internal/secret"
)

const botToken = "123456:CANARY-bot-token-AAbbCC"

// botAPI is a loopback Bot API: sendMessage for one bot, with the API's
// error envelope.
func botAPI(t *testing.T, reply func(w http.ResponseWriter)) (*httptest.Server, *[]telegram.Request) {
	t.Helper()
	var got []telegram.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/bot"+botToken+"/sendMessage" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"ok":false,"error_code":404,"description":"Not Found"}`)
			return
		}
		var req telegram.Request
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil || req.ChatID == "" || req.Text == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"ok":false,"error_code":400,"description":"Bad Request: message text is empty"}`)
			return
		}
		got = append(got, req)
		reply(w)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func tok(v string) telegram.TokenSource {
	return func(context.Context) (secret.Value, error) { return secret.FromString(v), nil }
}

func TestSendMessage(t *testing.T) {
	srv, got := botAPI(t, func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"ok":true,"result":{"message_id":7}}`) })
	s, err := telegram.New(telegram.Options{APIURL: srv.URL, Token: tok(botToken), ChatID: "-1001234567890"})
	if err != nil {
		t.Fatal(err)
	}
	a := &alert.Alert{ID: "alr_t", Kind: alert.KindAlert, Detector: "detect.x", Severity: alert.SeverityLow, Summary: "<b>not html</b>", Count: 1, Time: time.Unix(0, 0)}
	for i := range 300 {
		a.Evidence = append(a.Evidence, alert.Field{Key: "k", Value: strings.Repeat("v", 20) + string(rune('a'+i%26))})
	}
	if err := s.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	m := (*got)[0]
	if m.ChatID != "-1001234567890" || !m.DisableNotification || m.LinkPreview == nil || !m.LinkPreview.IsDisabled {
		t.Fatalf("request %+v", m)
	}
	if len(m.Text) > telegram.MaxText || !strings.Contains(m.Text, "<b>not html</b>") || !strings.HasSuffix(m.Text, "alert id: alr_t") {
		t.Fatalf("text (%d bytes) %q", len(m.Text), m.Text[len(m.Text)-60:])
	}
}

func TestErrors(t *testing.T) {
	for _, tt := range []struct {
		name      string
		reply     string
		status    int
		permanent bool
		retry     time.Duration
		want      string
	}{
		{"flood", `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 17","parameters":{"retry_after":17}}`, 429, false, 17 * time.Second, "retry after 17"},
		{"chat not found", `{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}`, 400, true, 0, "chat not found"},
		{"blocked", `{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}`, 403, true, 0, "blocked"},
		{"not ok on 200", `{"ok":false}`, 200, false, 0, "did not answer ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := botAPI(t, func(w http.ResponseWriter) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.reply)
			})
			s, _ := telegram.New(telegram.Options{APIURL: srv.URL, Token: tok(botToken), ChatID: "42"})
			err := s.Deliver(context.Background(), &alert.Alert{ID: "alr_t", Severity: alert.SeverityHigh, Summary: "s", Count: 1})
			var de *alert.DeliveryError
			if !errors.As(err, &de) || de.Permanent != tt.permanent || de.RetryAfter != tt.retry || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %#v (%v)", err, err)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Fatalf("error shows the bot token: %v", err)
			}
		})
	}
	// A wrong token is a 404; the error never shows the token either.
	srv, _ := botAPI(t, nil)
	s, _ := telegram.New(telegram.Options{APIURL: srv.URL, Token: tok("999:CANARY-wrong"), ChatID: "42"})
	if err := s.Deliver(context.Background(), &alert.Alert{ID: "alr_t", Severity: alert.SeverityHigh, Summary: "s", Count: 1}); err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("wrong token: %v", err)
	}
	for _, bad := range []string{"", "a/b", "a b", "x?y"} {
		s, _ := telegram.New(telegram.Options{APIURL: srv.URL, Token: tok(bad), ChatID: "42"})
		var de *alert.DeliveryError
		if err := s.Deliver(context.Background(), &alert.Alert{ID: "alr_t", Severity: alert.SeverityHigh, Count: 1}); !errors.As(err, &de) || !de.Permanent {
			t.Fatalf("token %q: %v", bad, err)
		}
	}
}
