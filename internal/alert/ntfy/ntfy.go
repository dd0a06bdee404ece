// Package ntfy is the ntfy alert sink: it publishes each alert as a
// plain-text message to an ntfy topic URL (https://ntfy.sh/<topic> or a
// self-hosted server), with X-Title, X-Priority (1..5 from the severity)
// and X-Tags headers.
//
// Security model: on a public ntfy server the topic name is effectively a
// password (anyone who knows it can read the topic), so prefer a
// self-hosted server or an access-controlled topic with a token; the
// token is a secret reference resolved by the app and sent only as
// "Authorization: Bearer". Header values are RFC 2047-encoded when they
// are not plain ASCII and never contain line breaks.
package ntfy

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/secret"
)

// MaxText bounds a message body (ntfy turns larger ones into attachments).
const MaxText = 3800

// TokenSource returns the access token. The caller must not modify it.
type TokenSource func(ctx context.Context) (secret.Value, error)

// Options configure New.
type Options struct {
	// URL is the topic URL. Required; https://, or http:// to loopback.
	URL string
	// Token returns an access token; nil sends none.
	Token TokenSource
	// Client sends the requests; nil: alert.NewHTTPClient defaults.
	Client *http.Client
}

// Sink publishes alerts to one ntfy topic.
type Sink struct {
	u     *url.URL
	token TokenSource
	hc    *http.Client
}

// New checks o and returns the sink.
func New(o Options) (*Sink, error) {
	u, err := alert.CheckURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("ntfy: %w", err)
	}
	if strings.Trim(u.Path, "/") == "" {
		return nil, errors.New("ntfy: the URL must name a topic (https://ntfy.example/<topic>)")
	}
	s := &Sink{u: u, token: o.Token, hc: o.Client}
	if s.hc == nil {
		if s.hc, err = alert.NewHTTPClient(alert.HTTPOptions{}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Priority maps a severity to ntfy's 1 (min) .. 5 (max).
func Priority(s alert.Severity) int {
	switch s {
	case alert.SeverityCritical:
		return 5
	case alert.SeverityHigh:
		return 4
	case alert.SeverityMedium:
		return 3
	default:
		return 2
	}
}

// headerValue makes s safe as a header value: no control characters, and
// RFC 2047 (UTF-8, base64) when it is not plain ASCII.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return mime.BEncoding.Encode("utf-8", s)
}

// Deliver implements alert.Sink.
func (s *Sink) Deliver(ctx context.Context, a *alert.Alert) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.u.String(), strings.NewReader(alert.Text(a, MaxText)))
	if err != nil {
		return alert.Permanent("request", errors.New("cannot build the request"))
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "keystile-alert/1")
	req.Header.Set("X-Title", headerValue(alert.Title(a)))
	req.Header.Set("X-Priority", fmt.Sprint(Priority(a.Severity)))
	tags := "keystile," + a.Severity.String()
	if a.Severity >= alert.SeverityHigh {
		tags = "rotating_light," + tags
	}
	req.Header.Set("X-Tags", tags)
	req.Header.Set("X-Markdown", "no")
	if s.token != nil {
		tok, err := s.token(ctx)
		if err != nil {
			return alert.Temporary("token", err)
		}
		t := string(tok.Reveal())
		if strings.ContainsAny(t, "\r\n\x00") {
			return alert.Permanent("token", errors.New("malformed access token"))
		}
		req.Header.Set("Authorization", "Bearer "+t)
	}
	_, err = alert.Do(s.hc, req)
	return err
}

var _ alert.Sink = (*Sink)(nil)
