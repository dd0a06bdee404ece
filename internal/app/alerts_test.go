package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
)

// TestServerAlerts runs serve with two webhook sinks, one of which never
// answers: Send from the server's dispatcher stays fast and the gateway
// keeps answering while the stalled sink's queue overflows; the healthy
// sink gets signed, scrubbed alerts; a low-severity alert waiting for a
// digest is in the database and still pending after a restart; shutdown
// is bounded.
func TestServerAlerts(t *testing.T) {
	const hookKey = "CANARY-app-webhook-key-61f0"
	const canary = "CANARY-app-venue-secret-d93e"
	var mu sync.Mutex
	var got []alert.Alert
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify([]byte(hookKey), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		got = append(got, p.Alert)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer healthy.Close()
	release := make(chan struct{})
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stalled.Close()
	defer close(release)

	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	ctx := context.Background()
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dataDir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`gateway:
  listen: 127.0.0.1:0
alerts:
  queue_size: 64
  sinks:
    - name: healthy
      type: webhook
      digest: {max_severity: info, at: "00:00"}
      settings: {url: "%s/k", secret_ref: "env:HOOK_KEY"}
    - name: stalled
      type: webhook
      timeout: 1s
      settings: {url: "%s/k", secret_ref: "env:HOOK_KEY"}
`, healthy.URL, stalled.URL)
	cfgPath := filepath.Join(tmp, "keystile.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	env := app.Env{Getenv: func(k string) string {
		if k == "HOOK_KEY" {
			return hookKey
		}
		return ""
	}}
	logBuf := &syncBuffer{}
	start := func() (*app.Server, context.CancelFunc, chan error) {
		red := logging.NewRedactor()
		red.Register(secret.FromString(canary))
		log := logging.New(logBuf, logging.Options{Level: slog.LevelDebug, Format: "json", Redactor: red})
		srv, err := app.NewServer(ctx, env, app.ServerOptions{DataDir: dataDir, Config: cfg, Logger: log, Redactor: red})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- srv.Run(rctx) }()
		return srv, cancel, done
	}
	srv, cancel, done := start()

	began := time.Now()
	for i := range 2000 {
		srv.Alerts().Send(alert.Alert{Detector: "detect.test", Severity: alert.SeverityHigh,
			Subject: alert.Subject{Token: fmt.Sprintf("tok_%04d", i)}, Summary: "echoed " + canary})
	}
	if el := time.Since(began); el > 2*time.Second {
		t.Fatalf("2000 Sends took %s", el)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for range 20 {
		resp, err := hc.Get("http://" + srv.GatewayAddr() + "/-/healthz")
		if err != nil {
			t.Fatalf("gateway blocked while a sink stalls: %v", err)
		}
		resp.Body.Close()
	}
	// The flood above may still fill the queues (and be dropped, by
	// design): let the router and the healthy sink drain before the one
	// alert that must reach the digest, so that it is not dropped too.
	drained := time.Now().Add(10 * time.Second)
	for {
		st := srv.Alerts().Status(ctx)
		busy := st.Queued
		for _, s := range st.Sinks {
			if s.Name == "healthy" {
				busy += s.Queued
			}
		}
		if busy == 0 {
			break
		}
		if time.Now().After(drained) {
			t.Fatalf("the alert queues did not drain: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !srv.Alerts().Send(alert.Alert{Detector: "detect.hours", Severity: alert.SeverityInfo, Summary: "for the digest"}) {
		t.Fatal("the digest alert was refused by an empty queue")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		st := srv.Alerts().Status(ctx)
		var h alert.SinkStatus
		for _, s := range st.Sinks {
			if s.Name == "healthy" {
				h = s
			}
		}
		if n > 1 && h.Digested == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthy sink: %d alerts, status %+v", n, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	alerts := 0
	for _, a := range got {
		if strings.Contains(a.Summary, canary) {
			t.Fatalf("alert not scrubbed: %q", a.Summary)
		}
		if a.Kind == alert.KindAlert {
			alerts++
			if !strings.Contains(a.Summary, "echoed REDACTED") {
				t.Fatalf("alert summary %q", a.Summary)
			}
		}
	}
	mu.Unlock()
	if alerts == 0 {
		t.Fatal("no alert reached the healthy sink")
	}

	stopAt := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(stopAt); el > 15*time.Second {
		t.Fatalf("shutdown took %s with a stalled sink", el)
	}

	// After a restart the digest item is still pending.
	srv, cancel, done = start()
	defer func() {
		cancel()
		<-done
	}()
	for _, s := range srv.Alerts().Status(ctx).Sinks {
		if s.Name == "healthy" && (s.Digest == nil || s.Digest.Pending != 1) {
			t.Fatalf("digest after restart: %+v", s.Digest)
		}
	}
	if strings.Contains(logBuf.String(), canary) || strings.Contains(logBuf.String(), hookKey) {
		t.Fatal("the log holds a secret")
	}
}
