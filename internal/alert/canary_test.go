package alert_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/alerttest"
	"github.com/keystile/keystile/internal/alert/email"
	"github.com/keystile/keystile/internal/alert/ntfy"
	"github.com/keystile/keystile/internal/alert/slack"
	"github.com/keystile/keystile/internal/alert/telegram"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
)

// capture is an HTTP server on loopback that keeps every byte of every
// request it receives (request line, headers, body) and answers ok.
type capture struct {
	srv  *httptest.Server
	mu   sync.Mutex
	raw  []byte
	hits int
}

func newCapture(t *testing.T, answer string) *capture {
	c := &capture{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dump, _ := httputil.DumpRequest(r, true)
		c.mu.Lock()
		c.raw = append(c.raw, dump...)
		c.hits++
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *capture) bytes() ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.raw...), c.hits
}

var fullToken = regexp.MustCompile(`kst_(live|test)_[0-9A-Za-z]{43,}`)

// leaks lists the encodings of canary found in b, and whether b holds a
// full client token.
func leaks(b []byte, canary string) []string {
	forms := map[string]string{
		"raw": canary, "hex": hex.EncodeToString([]byte(canary)), "HEX": strings.ToUpper(hex.EncodeToString([]byte(canary))),
		"base64": base64.StdEncoding.EncodeToString([]byte(canary)), "base64url": base64.RawURLEncoding.EncodeToString([]byte(canary)),
		"url": url.QueryEscape(canary), "lower": strings.ToLower(canary),
		"fragment": canary[:16], "json-escaped": strings.ReplaceAll(canary, "-", `\u002d`),
	}
	var out []string
	for name, f := range forms {
		if bytes.Contains(b, []byte(f)) {
			out = append(out, name)
		}
	}
	if fullToken.Match(b) {
		out = append(out, "kst_ token")
	}
	return out
}

// TestNoSecretReachesAnySink is the canary test across the five sinks:
// an alert whose every text field carries a registered secret (in several
// encodings) and full kst_ tokens reaches real servers on loopback, and
// none of the bytes they received — decoded where the transport encodes
// (quoted-printable mail) — holds the secret or a token in any form.
func TestNoSecretReachesAnySink(t *testing.T) {
	const canary = "CANARY-binance-secret-9f3b2c7d1e"
	red := logging.NewRedactor()
	red.Register(secret.FromString(canary))
	tok := "kst_live_" + strings.Repeat("Zq9", 15)
	tokTest := "kst_test_" + strings.Repeat("0aZ", 15) + "ab"
	enc := []string{canary, hex.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte(canary)), url.QueryEscape(canary), tok, tokTest}
	all := strings.Join(enc, " | ")

	hook := newCapture(t, `{}`)
	sl := newCapture(t, `ok`)
	tg := newCapture(t, `{"ok":true,"result":{}}`)
	nt := newCapture(t, `{"id":"x"}`)
	smtpSrv, err := alerttest.StartSMTP(alerttest.SMTPOptions{User: "u", Password: "smtp-password-0123"})
	if err != nil {
		t.Fatal(err)
	}
	defer smtpSrv.Close()

	val := func(s string) func(context.Context) (secret.Value, error) {
		return func(context.Context) (secret.Value, error) { return secret.FromString(s), nil }
	}
	ws, _ := webhook.New(webhook.Options{URL: hook.srv.URL + "/h", Key: val("webhook-key-0123456789")})
	ss, _ := slack.New(slack.Options{URL: val(sl.srv.URL + "/services/T/B/X")})
	ts, _ := telegram.New(telegram.Options{APIURL: tg.srv.URL, Token: val("1:bottoken"), ChatID: "42"})
	ns, _ := ntfy.New(ntfy.Options{URL: nt.srv.URL + "/topic"})
	es, err := email.New(email.Options{Host: smtpSrv.Host, Port: smtpSrv.Port, RootCAs: smtpSrv.Pool, Username: "u", Password: val("smtp-password-0123"),
		From: "alerts@example.org", To: []string{"ops@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	d := newDispatcher(t, alert.Options{Scrubber: red, Sinks: []alert.SinkConfig{
		{Name: "webhook", Sink: ws}, {Name: "slack", Sink: ss}, {Name: "telegram", Sink: ts}, {Name: "ntfy", Sink: ns}, {Name: "email", Sink: es},
	}})
	d.Send(alert.Alert{
		Detector: "detect." + canary, Severity: alert.SeverityCritical,
		Subject:  alert.Subject{Token: tok, Venue: canary, Credential: tokTest},
		Summary:  "the bot echoed " + all,
		Evidence: []alert.Field{{Key: "echo", Value: all}, {Key: canary, Value: "x"}, {Key: "secret", Value: "whatever"}},
		Action:   "rotate " + all,
	})
	if _, err := d.Test(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, h1 := hook.bytes()
		_, h2 := sl.bytes()
		_, h3 := tg.bytes()
		_, h4 := nt.bytes()
		if h1 >= 2 && h2 >= 2 && h3 >= 2 && h4 >= 2 && len(smtpSrv.Mails()) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every sink received both messages: %d %d %d %d %d", h1, h2, h3, h4, len(smtpSrv.Mails()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, c := range map[string]*capture{"webhook": hook, "slack": sl, "telegram": tg, "ntfy": nt} {
		b, _ := c.bytes()
		if l := leaks(b, canary); len(l) > 0 {
			t.Errorf("%s received %v", name, l)
		}
		if !bytes.Contains(b, []byte("REDACTED")) {
			t.Errorf("%s: nothing was redacted, so the alert did not carry the canary", name)
		}
	}
	for _, m := range smtpSrv.Mails() {
		decoded, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(m.Data)))
		for form, b := range map[string][]byte{"as sent": m.Data, "decoded": decoded} {
			if l := leaks(b, canary); len(l) > 0 {
				t.Errorf("email (%s) holds %v", form, l)
			}
		}
	}
	if l := leaks(smtpSrv.Raw(), canary); len(l) > 0 {
		t.Errorf("SMTP wire holds %v", l)
	}
}
