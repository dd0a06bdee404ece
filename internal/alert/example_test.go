package alert_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/secret"
)

// ExampleDispatcher raises one alert through a Dispatcher with a signed
// webhook sink. Send returns at once; the sink's worker delivers.
func ExampleDispatcher() {
	key := []byte("example-webhook-key-0123")
	got := make(chan string, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify(key, r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute) == nil {
			got <- "verified alert " + r.Header.Get(webhook.HeaderIdempotency)[:4] + "…"
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	hook, _ := webhook.New(webhook.Options{URL: receiver.URL, Key: func(context.Context) (secret.Value, error) { return secret.New(key), nil }})
	d, err := alert.New(alert.Options{
		Policy: alert.Policy{DedupeWindow: 10 * time.Minute, RateCount: 30, RatePer: time.Hour},
		Sinks:  []alert.SinkConfig{{Name: "ops", Type: "webhook", Sink: hook}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = d.Close(context.Background()) }()

	d.Send(alert.Alert{
		Detector: "detect.order_size", Severity: alert.SeverityHigh,
		Subject:  alert.Subject{Token: "tok_ab12", Venue: "binance"},
		Summary:  "order 10x the usual size from a new address",
		Evidence: []alert.Field{{Key: "notional", Value: "12000 USDT"}},
		Action:   "keystile token freeze tok_ab12",
	})
	fmt.Println(<-got)
	// Output: verified alert alr_…
}
