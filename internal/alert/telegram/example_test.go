package telegram_test

import (
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/telegram"
)

// ExampleRender shows the sendMessage body for an alert: plain text, no
// parse mode, silent below medium severity.
func ExampleRender() {
	a := &alert.Alert{ID: "alr_1", Kind: alert.KindAlert, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Detector: "detect.hours",
		Severity: alert.SeverityLow, Subject: alert.Subject{Token: "tok_ab12"}, Summary: "order outside the bot's usual hours", Count: 1}
	r := telegram.Render("-1001234567890", a)
	fmt.Println(r.DisableNotification)
	fmt.Println(r.Text)
	// Output:
	// true
	// keystile LOW: detect.hours (token tok_ab12)
	//
	// order outside the bot's usual hours
	//
	// severity: low
	// detector: detect.hours
	// subject: token tok_ab12
	// time: 2026-01-02T03:04:05Z
	// alert id: alr_1
}
