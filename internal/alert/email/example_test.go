package email_test

import (
	"context"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/alerttest"
	"github.com/keystile/keystile/internal/alert/email"
)

// ExampleSink mails an alert to an SMTP server on loopback over STARTTLS.
func ExampleSink() {
	srv, err := alerttest.StartSMTP(alerttest.SMTPOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	s, err := email.New(email.Options{Host: srv.Host, Port: srv.Port, RootCAs: srv.Pool,
		From: "keystile <alerts@example.org>", To: []string{"ops@example.org"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := &alert.Alert{ID: "alr_1", Kind: alert.KindAlert, Time: time.Now(), Detector: "detect.new_ip", Severity: alert.SeverityHigh, Summary: "new source address", Count: 1}
	if err := s.Deliver(context.Background(), a); err != nil {
		fmt.Println(err)
		return
	}
	m := srv.Mails()[0]
	fmt.Println(m.From, m.To, m.TLS)
	// Output: alerts@example.org [ops@example.org] true
}
