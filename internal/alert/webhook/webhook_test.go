package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/secret"
)

var key = []byte("whsec-test-key-0123456789")

// TestSignKnownAnswer: the MAC is HMAC-SHA256(key, "<t>." + body), as
// computed independently (Python's hmac module).
func TestSignKnownAnswer(t *testing.T) {
	got := fmt.Sprintf("%x", webhook.Sign(key, 1767323045, []byte(`{"hello":"world"}`)))
	if want := "d3ed7fe6d8097bd1f61c36ae73878cb40198fc4251971e73018b64dae22d8f3d"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"type":"keystile.alert"}`)
	ts := int64(1767323045)
	now := time.Unix(ts, 0).Add(30 * time.Second)
	good := webhook.SignatureHeader(ts, webhook.Sign(key, ts, body))
	other := webhook.Sign([]byte("another-key-0123456789"), ts, body)
	tests := []struct {
		name   string
		key    []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", key, good, body, now, nil},
		{"valid among several", key, webhook.SignatureHeader(ts, other, webhook.Sign(key, ts, body)), body, now, nil},
		{"spaces around parts", key, strings.ReplaceAll(good, ",", " , "), body, now, nil},
		{"unknown scheme ignored", key, good + ",v0=abc", body, now, nil},
		{"tampered body", key, good, []byte(`{"type":"keystile.alert "}`), now, webhook.ErrNoMatch},
		{"wrong key", []byte("wrong-key-0123456789"), good, body, now, webhook.ErrNoMatch},
		{"timestamp swapped", key, strings.Replace(good, "t=1767323045", "t=1767323046", 1), body, now, webhook.ErrNoMatch},
		{"stale", key, good, body, now.Add(10 * time.Minute), webhook.ErrStale},
		{"future", key, good, body, now.Add(-10 * time.Minute), webhook.ErrStale},
		{"no v1", key, "t=1767323045", body, now, webhook.ErrMalformed},
		{"no t", key, "v1=" + strings.Repeat("0", 64), body, now, webhook.ErrMalformed},
		{"two t", key, "t=1,t=2,v1=" + strings.Repeat("0", 64), body, now, webhook.ErrMalformed},
		{"short v1", key, "t=1767323045,v1=abcd", body, now, webhook.ErrMalformed},
		{"non-hex v1", key, "t=1767323045,v1=" + strings.Repeat("g", 64), body, now, webhook.ErrMalformed},
		{"signed t", key, "t=+1767323045,v1=" + strings.Repeat("0", 64), body, now, webhook.ErrMalformed},
		{"empty", key, "", body, now, webhook.ErrMalformed},
		{"too long", key, good + strings.Repeat(",x=y", 2000), body, now, webhook.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.key, tt.header, tt.body, tt.now, 0)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDeliver posts to a real server: JSON payload, signature, timestamp
// and idempotency headers; each attempt re-signed, the key the same.
func TestDeliver(t *testing.T) {
	type req struct {
		h    http.Header
		body []byte
	}
	got := make(chan req, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- req{r.Header.Clone(), b}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	clock := time.Unix(1767323045, 0)
	s, err := webhook.New(webhook.Options{URL: srv.URL + "/keystile?src=1", Now: func() time.Time { return clock },
		Key: func(context.Context) (secret.Value, error) { return secret.New(key), nil }})
	if err != nil {
		t.Fatal(err)
	}
	a := &alert.Alert{ID: "alr_abc", Kind: alert.KindAlert, Detector: "detect.x", Severity: alert.SeverityMedium, Summary: "s", Count: 1, Time: clock}
	for i := range 2 {
		clock = clock.Add(time.Duration(i) * time.Second)
		if err := s.Deliver(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.h.Get("Content-Type") != "application/json" || r.h.Get(webhook.HeaderIdempotency) != "alr_abc" || r.h.Get(webhook.HeaderAlertID) != "alr_abc" {
			t.Fatalf("headers %v", r.h)
		}
		if ts := r.h.Get(webhook.HeaderTimestamp); ts != strconv.FormatInt(clock.Unix(), 10) {
			t.Fatalf("timestamp %s", ts)
		}
		if err := webhook.Verify(key, r.h.Get(webhook.HeaderSignature), r.body, clock, time.Minute); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		var p webhook.Payload
		if err := json.Unmarshal(r.body, &p); err != nil || p.Type != "keystile.alert" || p.Version != 1 || p.Alert.ID != "alr_abc" || p.Alert.Severity != alert.SeverityMedium {
			t.Fatalf("payload %+v %v", p, err)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	k := func(context.Context) (secret.Value, error) { return secret.New(key), nil }
	for _, u := range []string{"http://hooks.example.com/x", "https://u:p@hooks.example.com/", "ftp://x/"} {
		if _, err := webhook.New(webhook.Options{URL: u, Key: k}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	s, err := webhook.New(webhook.Options{URL: "http://127.0.0.1:1/", Key: func(context.Context) (secret.Value, error) { return secret.FromString("short"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Deliver(context.Background(), &alert.Alert{ID: "alr_x", Severity: alert.SeverityLow, Count: 1})
	var de *alert.DeliveryError
	if !errors.As(err, &de) || !de.Permanent || !errors.Is(err, webhook.ErrShortKey) {
		t.Fatalf("short key: %v", err)
	}
}
