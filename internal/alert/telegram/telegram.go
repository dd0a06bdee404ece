// Package telegram is the Telegram alert sink: it sends each alert as a
// plain-text message through the Bot API's sendMessage method
// (POST <api_url>/bot<token>/sendMessage) to one chat.
//
// Security model: the bot token is a secret reference resolved by the
// app; it travels only in the request path, as the Bot API requires, and
// errors never contain the URL. Messages are sent without parse_mode, so
// nothing inside an alert is read as markup or a link; low-severity
// alerts are sent silently (disable_notification).
package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/secret"
)

// DefaultAPI is the Bot API's base URL.
const DefaultAPI = "https://api.telegram.org"

// MaxText is the Bot API's limit on a message's text (characters; kept
// in bytes here, which is stricter).
const MaxText = 4096

// TokenSource returns the bot token. The caller must not modify it.
type TokenSource func(ctx context.Context) (secret.Value, error)

// Options configure New.
type Options struct {
	// APIURL is the Bot API base URL; "" means DefaultAPI.
	APIURL string
	// Token returns the bot token. Required.
	Token TokenSource
	// ChatID is a numeric chat id or @channelusername. Required.
	ChatID string
	// Client sends the requests; nil: alert.NewHTTPClient defaults.
	Client *http.Client
}

// Sink sends alerts to one Telegram chat.
type Sink struct {
	api    *url.URL
	token  TokenSource
	chatID string
	hc     *http.Client
}

// New checks o and returns the sink.
func New(o Options) (*Sink, error) {
	if o.APIURL == "" {
		o.APIURL = DefaultAPI
	}
	u, err := alert.CheckURL(o.APIURL)
	if err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	if o.Token == nil || o.ChatID == "" {
		return nil, errors.New("telegram: token source and chat id are required")
	}
	s := &Sink{api: u, token: o.Token, chatID: o.ChatID, hc: o.Client}
	if s.hc == nil {
		if s.hc, err = alert.NewHTTPClient(alert.HTTPOptions{}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Request is the sendMessage body.
type Request struct {
	ChatID              string       `json:"chat_id"`
	Text                string       `json:"text"`
	DisableNotification bool         `json:"disable_notification,omitempty"`
	LinkPreview         *LinkPreview `json:"link_preview_options,omitempty"`
}

// LinkPreview turns link previews off.
type LinkPreview struct {
	IsDisabled bool `json:"is_disabled"`
}

// answer is the Bot API's reply envelope.
type answer struct {
	OK          bool   `json:"ok"`
	ErrorCode   int    `json:"error_code"`
	Description string `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// Render returns the sendMessage body for a.
func Render(chatID string, a *alert.Alert) Request {
	title := alert.Title(a)
	return Request{
		ChatID: chatID, Text: title + "\n\n" + alert.Text(a, MaxText-len(title)-2),
		DisableNotification: a.Severity < alert.SeverityMedium && a.Kind != alert.KindDropped,
		LinkPreview:         &LinkPreview{IsDisabled: true},
	}
}

// Deliver implements alert.Sink.
func (s *Sink) Deliver(ctx context.Context, a *alert.Alert) error {
	tok, err := s.token(ctx)
	if err != nil {
		return alert.Temporary("bot token", err)
	}
	t := string(tok.Reveal())
	if t == "" || strings.ContainsAny(t, "/?#% \t\r\n") {
		return alert.Permanent("bot token", errors.New("malformed bot token"))
	}
	body, err := json.Marshal(Render(s.chatID, a))
	if err != nil {
		return alert.Permanent("encode", err)
	}
	u := *s.api
	u.Path = strings.TrimSuffix(u.Path, "/") + "/bot" + t + "/sendMessage"
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return alert.Permanent("request", errors.New("cannot build the request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keystile-alert/1")
	raw, err := alert.Do(s.hc, req)
	var ans answer
	jerr := json.Unmarshal(raw, &ans)
	if err != nil {
		var de *alert.DeliveryError
		if errors.As(err, &de) && jerr == nil && ans.Description != "" {
			de.Err = errors.New(clip(ans.Description))
			if ans.Parameters.RetryAfter > 0 {
				de.RetryAfter = time.Duration(min(ans.Parameters.RetryAfter, 86400)) * time.Second
			}
		}
		return err
	}
	if jerr != nil || !ans.OK {
		return &alert.DeliveryError{Step: "answer", Status: http.StatusOK, Err: errors.New("the Bot API did not answer ok")}
	}
	return nil
}

// clip bounds a description from the API for error messages.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}

var _ alert.Sink = (*Sink)(nil)
