// Package email is the e-mail alert sink: it sends each alert as a
// plain-text message over SMTP (net/smtp), always encrypted — STARTTLS on
// the submission port (587) or TLS from the first byte (465).
//
// Security model: there is no plaintext mode. A server that does not
// offer STARTTLS is refused before anything is sent, certificates are
// verified (against the system roots or a configured CA bundle) with TLS
// 1.2 or newer, and SMTP AUTH (PLAIN) is only ever attempted inside TLS.
// The password is a secret reference resolved by the app. Header values
// are encoded (RFC 2047) and never contain line breaks, so text from an
// alert cannot add headers or recipients; addresses are parsed once at
// start.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/secret"
)

// TLS modes.
const (
	ModeSTARTTLS = "starttls"
	ModeImplicit = "implicit"
)

// ErrNoSTARTTLS is returned (as a permanent delivery error) when the
// server does not offer STARTTLS.
var ErrNoSTARTTLS = errors.New("email: the server does not offer STARTTLS; refusing to send without TLS")

// PasswordSource returns the SMTP password. The caller must not modify it.
type PasswordSource func(ctx context.Context) (secret.Value, error)

// Options configure New.
type Options struct {
	// Host and Port of the SMTP server. Port 0: 587 (465 for ModeImplicit).
	Host string
	Port int
	// Mode is ModeSTARTTLS (default) or ModeImplicit.
	Mode string
	// ServerName is the name verified in the certificate; "" means Host.
	ServerName string
	// RootCAs are trusted instead of the system roots when set.
	RootCAs *x509.CertPool
	// Username enables SMTP AUTH PLAIN with Password.
	Username string
	Password PasswordSource
	// From is the sender; To the recipients (at least one).
	From string
	To   []string
	// Hello is the name sent in EHLO; "" means "localhost".
	Hello string
	// Now is the clock for the Date header; nil: time.Now.
	Now func() time.Time
}

// Sink mails alerts.
type Sink struct {
	o    Options
	from *mail.Address
	to   []*mail.Address
}

// New checks o and returns the sink.
func New(o Options) (*Sink, error) {
	if o.Mode == "" {
		o.Mode = ModeSTARTTLS
	}
	if o.Mode != ModeSTARTTLS && o.Mode != ModeImplicit {
		return nil, fmt.Errorf("email: mode must be %s or %s", ModeSTARTTLS, ModeImplicit)
	}
	if o.Host == "" || strings.ContainsAny(o.Host, "\r\n/@ ") {
		return nil, errors.New("email: a bare host name is required")
	}
	if o.Port == 0 {
		o.Port = 587
		if o.Mode == ModeImplicit {
			o.Port = 465
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		return nil, errors.New("email: port out of range")
	}
	if o.ServerName == "" {
		o.ServerName = o.Host
	}
	if o.Hello == "" {
		o.Hello = "localhost"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Username != "" && o.Password == nil {
		return nil, errors.New("email: username without a password source")
	}
	s := &Sink{o: o}
	var err error
	if s.from, err = parseAddr(o.From); err != nil {
		return nil, fmt.Errorf("email: from: %w", err)
	}
	if len(o.To) == 0 {
		return nil, errors.New("email: no recipient")
	}
	for _, t := range o.To {
		a, err := parseAddr(t)
		if err != nil {
			return nil, fmt.Errorf("email: to: %w", err)
		}
		s.to = append(s.to, a)
	}
	return s, nil
}

func parseAddr(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break in address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, errors.New("not an e-mail address")
	}
	return a, nil
}

// Deliver implements alert.Sink.
func (s *Sink) Deliver(ctx context.Context, a *alert.Alert) error {
	msg, err := s.Message(a)
	if err != nil {
		return alert.Permanent("compose", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(s.o.Host, strconv.Itoa(s.o.Port)))
	if err != nil {
		return alert.Temporary("smtp dial", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	tc := &tls.Config{ServerName: s.o.ServerName, RootCAs: s.o.RootCAs, MinVersion: tls.VersionTLS12}
	if s.o.Mode == ModeImplicit {
		t := tls.Client(conn, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return tlsError("smtp tls", err)
		}
		conn = t
	}
	c, err := smtp.NewClient(conn, s.o.Host)
	if err != nil {
		return smtpError("smtp greeting", err)
	}
	defer c.Close()
	if err := c.Hello(s.o.Hello); err != nil {
		return smtpError("smtp ehlo", err)
	}
	if s.o.Mode == ModeSTARTTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return alert.Permanent("smtp starttls", ErrNoSTARTTLS)
		}
		if err := c.StartTLS(tc); err != nil {
			return tlsError("smtp starttls", err)
		}
	}
	if _, ok := c.TLSConnectionState(); !ok {
		return alert.Permanent("smtp tls", errors.New("the connection is not encrypted; refusing to send"))
	}
	if s.o.Username != "" {
		pw, err := s.o.Password(ctx)
		if err != nil {
			return alert.Temporary("smtp password", err)
		}
		if err := c.Auth(smtp.PlainAuth("", s.o.Username, string(pw.Reveal()), s.o.Host)); err != nil {
			return smtpError("smtp auth", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return smtpError("smtp mail from", err)
	}
	for _, t := range s.to {
		if err := c.Rcpt(t.Address); err != nil {
			return smtpError("smtp rcpt to", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpError("smtp data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpError("smtp data", err)
	}
	if err := w.Close(); err != nil {
		return smtpError("smtp data", err)
	}
	_ = c.Quit()
	return nil
}

// Message composes the RFC 5322 message for a (CRLF line ends).
func (s *Sink) Message(a *alert.Alert) ([]byte, error) {
	var b bytes.Buffer
	h := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	to := make([]string, len(s.to))
	for i, t := range s.to {
		to[i] = t.String()
	}
	domain := "keystile.invalid"
	if i := strings.LastIndexByte(s.from.Address, '@'); i >= 0 && i+1 < len(s.from.Address) {
		domain = s.from.Address[i+1:]
	}
	h("From", s.from.String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", oneLine(alert.Title(a))))
	h("Date", s.o.Now().UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+a.ID+"@"+domain+">")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	h("X-Keystile-Alert-Id", a.ID)
	if a.Severity >= alert.SeverityHigh {
		h("X-Priority", "1")
		h("Importance", "high")
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(alert.Text(a, 0), "\n", "\r\n")
	if _, err := qp.Write([]byte(body + "\r\n")); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// smtpError classifies an SMTP failure: a 5xx reply is permanent, a 4xx
// reply or a broken connection temporary.
func smtpError(step string, err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return &alert.DeliveryError{Step: step, Status: tp.Code, Permanent: tp.Code >= 500, Err: err}
	}
	return alert.Temporary(step, err)
}

// tlsError classifies a TLS failure: a certificate that does not verify
// is permanent (retrying cannot fix it), anything else temporary.
func tlsError(step string, err error) error {
	var (
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		tve *tls.CertificateVerificationError
	)
	if errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &tve) {
		return alert.Permanent(step, err)
	}
	return smtpError(step, err)
}

var _ alert.Sink = (*Sink)(nil)
