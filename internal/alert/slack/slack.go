// Package slack is the Slack incoming-webhook alert sink: it posts each
// alert as a message ({"text": ...}) to a webhook URL created in the
// Slack app's "Incoming Webhooks" settings.
//
// Security model: the webhook URL is the credential (anyone holding it can
// post to the channel), so it comes from a secret reference resolved by
// the app, is never logged, and errors never contain it. Text from alerts
// is escaped for Slack's mrkdwn (&, <, >), so a value inside an alert
// cannot become a link, a user mention or @channel.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/secret"
)

// MaxText bounds the text of a message (Slack truncates beyond 40,000
// characters; a shorter message stays readable).
const MaxText = 12000

// URLSource returns the webhook URL. The caller must not modify it.
type URLSource func(ctx context.Context) (secret.Value, error)

// Options configure New.
type Options struct {
	// URL returns the incoming-webhook URL (https://hooks.slack.com/...;
	// http:// only to a loopback host). Required.
	URL URLSource
	// Client sends the requests; nil: alert.NewHTTPClient defaults.
	Client *http.Client
}

// Sink posts alerts to a Slack incoming webhook.
type Sink struct {
	url URLSource
	hc  *http.Client
}

// New checks o and returns the sink.
func New(o Options) (*Sink, error) {
	if o.URL == nil {
		return nil, errors.New("slack: no webhook URL source")
	}
	s := &Sink{url: o.URL, hc: o.Client}
	if s.hc == nil {
		var err error
		if s.hc, err = alert.NewHTTPClient(alert.HTTPOptions{}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Message is the JSON body posted.
type Message struct {
	Text string `json:"text"`
	// Mrkdwn enables Slack's formatting of Text.
	Mrkdwn bool `json:"mrkdwn"`
}

// Escape escapes s for Slack mrkdwn: &, < and > become entities, so that
// nothing in s is read as a link, mention or command.
func Escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Render returns the message for a.
func Render(a *alert.Alert) Message {
	title := Escape(alert.Title(a))
	text := Escape(alert.Text(a, MaxText-len(title)-64))
	return Message{Text: "*" + title + "*\n```\n" + strings.ReplaceAll(text, "```", "'''") + "\n```", Mrkdwn: true}
}

// Deliver implements alert.Sink.
func (s *Sink) Deliver(ctx context.Context, a *alert.Alert) error {
	raw, err := s.url(ctx)
	if err != nil {
		return alert.Temporary("webhook url", err)
	}
	u, err := alert.CheckURL(string(raw.Reveal()))
	if err != nil {
		return alert.Permanent("webhook url", err)
	}
	body, err := json.Marshal(Render(a))
	if err != nil {
		return alert.Permanent("encode", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return alert.Permanent("request", errors.New("cannot build the request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keystile-alert/1")
	answer, err := alert.Do(s.hc, req)
	if err != nil {
		var de *alert.DeliveryError
		if errors.As(err, &de) && len(answer) > 0 && len(answer) <= 64 && isCode(answer) {
			// Slack answers a short error code: invalid_payload,
			// channel_not_found, action_prohibited, ...
			de.Err = errors.New(string(answer))
		}
		return err
	}
	return nil
}

// isCode reports whether b looks like one of Slack's error codes.
func isCode(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

var _ alert.Sink = (*Sink)(nil)
