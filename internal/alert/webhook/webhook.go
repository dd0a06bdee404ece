// Package webhook is the signed-webhook alert sink: it POSTs each alert as
// JSON, signed with HMAC-SHA256 so that the receiver can tell it came from
// keystile and was not replayed, and it gives receivers the function that
// checks the signature.
//
// A request carries:
//
//	Content-Type: application/json
//	Keystile-Timestamp: 1767323045
//	Keystile-Signature: t=1767323045,v1=<hex HMAC-SHA256(key, "1767323045" + "." + body)>
//	Idempotency-Key: alr_…   (the same on every retry of one alert)
//	Keystile-Alert-Id: alr_…
//
// and the body {"type":"keystile.alert","version":1,"alert":{…}} (see
// Payload). Each attempt is signed afresh with its own timestamp; the
// idempotency key stays. A receiver verifies with Verify (or its own code:
// recompute the HMAC over the exact body bytes, compare in constant time,
// reject timestamps more than a few minutes old, and drop a repeated
// Idempotency-Key).
//
// Security model: the key is a secret reference resolved by the app; it
// is at least 16 bytes and never leaves this process except as MACs. The
// alert has been scrubbed by the Dispatcher before it is serialised here.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/secret"
)

// Header names.
const (
	HeaderSignature   = "Keystile-Signature"
	HeaderTimestamp   = "Keystile-Timestamp"
	HeaderIdempotency = "Idempotency-Key"
	HeaderAlertID     = "Keystile-Alert-Id"
)

// MinKeyLen is the shortest HMAC key accepted.
const MinKeyLen = 16

// ErrShortKey is returned by New for a key shorter than MinKeyLen.
var ErrShortKey = errors.New("webhook: HMAC key shorter than 16 bytes")

// Payload is the JSON body of a webhook request.
type Payload struct {
	// Type is always "keystile.alert".
	Type string `json:"type"`
	// Version of the payload format: 1.
	Version int         `json:"version"`
	Alert   alert.Alert `json:"alert"`
}

// KeySource returns the current HMAC key. The caller must not modify or
// wipe it (the app resolves a secret reference and caches the value).
type KeySource func(ctx context.Context) (secret.Value, error)

// Options configure New.
type Options struct {
	// URL receives the POSTs: https://, or http:// to a loopback host.
	URL string
	// Key returns the HMAC key. Required.
	Key KeySource
	// Client sends the requests; nil: alert.NewHTTPClient defaults.
	Client *http.Client
	// Now is the clock for timestamps; nil: time.Now.
	Now func() time.Time
}

// Sink posts signed alerts to one URL.
type Sink struct {
	u   *url.URL
	key KeySource
	hc  *http.Client
	now func() time.Time
}

// New checks o and returns the sink.
func New(o Options) (*Sink, error) {
	u, err := alert.CheckURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if o.Key == nil {
		return nil, errors.New("webhook: no key source")
	}
	s := &Sink{u: u, key: o.Key, hc: o.Client, now: o.Now}
	if s.hc == nil {
		if s.hc, err = alert.NewHTTPClient(alert.HTTPOptions{}); err != nil {
			return nil, err
		}
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Deliver implements alert.Sink.
func (s *Sink) Deliver(ctx context.Context, a *alert.Alert) error {
	body, err := json.Marshal(Payload{Type: "keystile.alert", Version: 1, Alert: *a})
	if err != nil {
		return alert.Permanent("encode", err)
	}
	key, err := s.key(ctx)
	if err != nil {
		return alert.Temporary("key", err)
	}
	if key.Len() < MinKeyLen {
		return alert.Permanent("key", ErrShortKey)
	}
	ts := s.now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.u.String(), bytes.NewReader(body))
	if err != nil {
		return alert.Permanent("request", errors.New("cannot build the request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keystile-alert/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, SignatureHeader(ts, Sign(key.Reveal(), ts, body)))
	req.Header.Set(HeaderIdempotency, a.ID)
	req.Header.Set(HeaderAlertID, a.ID)
	_, err = alert.Do(s.hc, req)
	return err
}

// Sign returns HMAC-SHA256(key, "<ts>." + body).
func Sign(key []byte, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// SignatureHeader formats the Keystile-Signature value "t=<ts>,v1=<hex>"
// with one v1 per signature.
func SignatureHeader(ts int64, sigs ...[]byte) string {
	var b bytes.Buffer
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(ts, 10))
	for _, s := range sigs {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(s))
	}
	return b.String()
}

var _ alert.Sink = (*Sink)(nil)
