package ntfy_test

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/ntfy"
	"github.com/keystile/keystile/internal/secret"
)

func TestPublish(t *testing.T) {
	type pub struct {
		h    http.Header
		body string
	}
	var got []pub
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tk_CANARYntfytoken0123" {
			http.Error(w, `{"code":40101,"http":401,"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/keystile-alerts" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got = append(got, pub{r.Header.Clone(), string(b)})
		_, _ = io.WriteString(w, `{"id":"abc","event":"message"}`)
	}))
	defer srv.Close()
	token := func(v string) ntfy.TokenSource {
		return func(context.Context) (secret.Value, error) { return secret.FromString(v), nil }
	}
	s, err := ntfy.New(ntfy.Options{URL: srv.URL + "/keystile-alerts", Token: token("tk_CANARYntfytoken0123")})
	if err != nil {
		t.Fatal(err)
	}
	a := &alert.Alert{ID: "alr_n", Kind: alert.KindAlert, Time: time.Unix(0, 0), Detector: "detect.größe", Severity: alert.SeverityCritical,
		Subject: alert.Subject{Venue: "kraken"}, Summary: "Größe über dem Üblichen", Count: 1}
	if err := s.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	p := got[0]
	title, err := new(mime.WordDecoder).DecodeHeader(p.h.Get("X-Title"))
	if err != nil || title != "keystile CRITICAL: detect.größe (venue kraken)" {
		t.Fatalf("title %q %v (raw %q)", title, err, p.h.Get("X-Title"))
	}
	if p.h.Get("X-Priority") != "5" || !strings.Contains(p.h.Get("X-Tags"), "rotating_light") || !strings.Contains(p.body, "Größe über dem Üblichen") {
		t.Fatalf("publish %+v", p)
	}
	// A wrong token is a permanent failure.
	s2, _ := ntfy.New(ntfy.Options{URL: srv.URL + "/keystile-alerts", Token: token("wrong")})
	var de *alert.DeliveryError
	if err := s2.Deliver(context.Background(), a); !errors.As(err, &de) || !de.Permanent || de.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := ntfy.New(ntfy.Options{URL: srv.URL}); err == nil {
		t.Fatal("a URL without a topic was accepted")
	}
	for sev, want := range map[alert.Severity]int{alert.SeverityInfo: 2, alert.SeverityLow: 2, alert.SeverityMedium: 3, alert.SeverityHigh: 4, alert.SeverityCritical: 5} {
		if ntfy.Priority(sev) != want {
			t.Errorf("Priority(%s) = %d", sev, ntfy.Priority(sev))
		}
	}
}
