package email_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/alerttest"
	"github.com/keystile/keystile/internal/alert/email"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/testnet"
)

const password = "CANARY-smtp-password-41c9e2"

func start(t *testing.T, o alerttest.SMTPOptions) *alerttest.SMTPServer {
	t.Helper()
	s, err := alerttest.StartSMTP(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sink(t *testing.T, s *alerttest.SMTPServer, mod func(*email.Options)) *email.Sink {
	t.Helper()
	o := email.Options{
		Host: s.Host, Port: s.Port, RootCAs: s.Pool, From: "keystile <alerts@example.org>", To: []string{"ops@example.org", "Second <two@example.org>"},
	}
	if mod != nil {
		mod(&o)
	}
	k, err := email.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testAlert() *alert.Alert {
	return &alert.Alert{
		ID: "alr_testid123", Kind: alert.KindAlert, Time: time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC), Detector: "detect.order_size",
		Severity: alert.SeverityHigh, Subject: alert.Subject{Token: "tok_ab12", Venue: "binance"},
		Summary: "Order 10× the usual size — from a new address", Count: 1,
		Evidence: []alert.Field{{Key: "notional", Value: "12000 USDT"}}, Action: "keystile token freeze tok_ab12",
	}
}

// TestSTARTTLSDelivery: the message arrives over STARTTLS, authenticated,
// to every recipient, and parses as a proper RFC 5322 message whose
// decoded body is the alert.
func TestSTARTTLSDelivery(t *testing.T) {
	s := start(t, alerttest.SMTPOptions{User: "alerts", Password: password})
	k := sink(t, s, func(o *email.Options) {
		o.Username = "alerts"
		o.Password = func(context.Context) (secret.Value, error) { return secret.FromString(password), nil }
	})
	if err := k.Deliver(context.Background(), testAlert()); err != nil {
		t.Fatal(err)
	}
	mails := s.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails", len(mails))
	}
	m := mails[0]
	if !m.TLS || m.User != "alerts" || m.From != "alerts@example.org" || strings.Join(m.To, ",") != "ops@example.org,two@example.org" {
		t.Fatalf("session %+v", m)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != "keystile HIGH: detect.order_size (token tok_ab12, venue binance)" {
		t.Fatalf("subject %q %v", subj, err)
	}
	if msg.Header.Get("Message-Id") != "<alr_testid123@example.org>" || msg.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Fatalf("headers %v", msg.Header)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Order 10× the usual size — from a new address", "notional: 12000 USDT", "suggested action: keystile token freeze tok_ab12", "alert id: alr_testid123"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("body lacks %q:\n%s", want, body)
		}
	}
	if bytes.Contains(s.Raw(), []byte(password)) || bytes.Contains(s.Raw(), []byte("12000 USDT")) {
		t.Fatal("password or content travelled in clear")
	}
}

func TestImplicitTLS(t *testing.T) {
	s := start(t, alerttest.SMTPOptions{Implicit: true})
	k := sink(t, s, func(o *email.Options) { o.Mode = email.ModeImplicit })
	if err := k.Deliver(context.Background(), testAlert()); err != nil {
		t.Fatal(err)
	}
	if m := s.Mails(); len(m) != 1 || !m[0].TLS {
		t.Fatalf("%d mails, or not over TLS", len(m))
	}
}

// TestRefusals: no STARTTLS, an untrusted certificate and a rejected
// recipient are refused as permanent failures, and no password is sent.
func TestRefusals(t *testing.T) {
	pw := func(context.Context) (secret.Value, error) { return secret.FromString(password), nil }
	tests := []struct {
		name   string
		opts   alerttest.SMTPOptions
		mod    func(*email.Options)
		status int
		want   error
	}{
		{"no starttls", alerttest.SMTPOptions{NoTLS: true}, func(o *email.Options) { o.Username, o.Password = "alerts", pw }, 0, email.ErrNoSTARTTLS},
		{"untrusted certificate", alerttest.SMTPOptions{}, func(o *email.Options) { o.RootCAs = nil; o.Username, o.Password = "alerts", pw }, 0, nil},
		{"wrong server name", alerttest.SMTPOptions{}, func(o *email.Options) { o.ServerName = "mail.example.org" }, 0, nil},
		{"recipient rejected", alerttest.SMTPOptions{Reject: 550}, nil, 550, nil},
		{"bad password", alerttest.SMTPOptions{User: "alerts", Password: "other"}, func(o *email.Options) { o.Username, o.Password = "alerts", pw }, 535, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.opts)
			err := sink(t, s, tt.mod).Deliver(context.Background(), testAlert())
			var de *alert.DeliveryError
			if !errors.As(err, &de) || !de.Permanent || de.Status != tt.status {
				t.Fatalf("err = %#v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(s.Mails()) != 0 || bytes.Contains(s.Raw(), []byte(password)) {
				t.Fatal("mail accepted, or the password sent in clear")
			}
		})
	}
	// A 4xx answer is temporary.
	s := start(t, alerttest.SMTPOptions{Reject: 450})
	err := sink(t, s, nil).Deliver(context.Background(), testAlert())
	var de *alert.DeliveryError
	if !errors.As(err, &de) || de.Permanent || de.Status != 450 {
		t.Fatalf("450: %#v", err)
	}
}

// TestHeaderInjection: text from an alert cannot add a header or a
// recipient.
func TestHeaderInjection(t *testing.T) {
	s := start(t, alerttest.SMTPOptions{})
	a := testAlert()
	a.Detector = "d\r\nBcc: evil@example.com"
	a.Subject.Token = "tok\r\nBcc: evil@example.com"
	if err := sink(t, s, nil).Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	m := s.Mails()[0]
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Bcc") != "" || len(m.To) != 2 {
		t.Fatalf("injected: %v %v", msg.Header, m.To)
	}
	for _, bad := range []string{"", "a@b\r\nc", "not an address"} {
		if _, err := email.New(email.Options{Host: "h", From: bad, To: []string{"x@y.z"}}); err == nil {
			t.Errorf("from %q accepted", bad)
		}
	}
}

func TestStalledServerHonoursDeadline(t *testing.T) {
	// A listener that accepts and never speaks.
	s := start(t, alerttest.SMTPOptions{})
	_ = s.Close()
	ln := testnet.Stalled(t).Port
	k, err := email.New(email.Options{Host: "127.0.0.1", Port: ln, From: "a@example.org", To: []string{"b@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = k.Deliver(ctx, testAlert())
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
}
