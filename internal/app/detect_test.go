package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/slack"
	"github.com/keystile/keystile/internal/alert/telegram"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

// TestResponder: the detector's freeze goes to the token service (an
// unknown token fails, recorded by the detector as a failed action); its
// kill engages the kill switch for every token as detect.<detector> by
// "detect", once (a second kill reports the switch already engaged), and
// a reason quoting what a bot sent (control characters, a very long
// instrument name) cannot stop it from engaging.
func TestResponder(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	raw, tk, err := tokens.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"binance"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := tokens.Create(ctx, token.CreateRequest{Name: "other", Venues: []string{"binance"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := killswitch.New(ctx, killswitch.Options{Store: db.Trips()})
	if err != nil {
		t.Fatal(err)
	}
	r := responder{tokens: tokens, kill: ks, log: slog.New(slog.DiscardHandler)}

	if err := r.FreezeToken(ctx, "tok_nosuchtoken", "test"); err == nil {
		t.Fatal("freezing an unknown token succeeded")
	}
	if err := r.FreezeToken(ctx, string(other.ID), "test"); err != nil {
		t.Fatal(err)
	}
	if got, _ := tokens.Get(ctx, other.ID); got.FrozenAt.IsZero() {
		t.Fatal("token not frozen")
	}

	f := detect.Finding{ID: "fnd_1", Detector: detect.OrderSize, Severity: detect.SeverityCritical, TokenID: string(tk.ID)}
	reason := "order_size fnd_1: order on \x00\x1b[31m" + strings.Repeat("BTC", 1000) + "\u202e"
	engaged, err := r.Kill(ctx, f, reason)
	if err != nil || !engaged {
		t.Fatalf("kill: engaged %v, %v", engaged, err)
	}
	trips := ks.Active()
	if len(trips) != 1 || trips[0].Scope != killswitch.ScopeAll || trips[0].Rule != "detect.order_size" || trips[0].Actor != "detect" ||
		len(trips[0].Reason) > killswitch.MaxReason || strings.ContainsAny(trips[0].Reason, "\x00\x1b\u202e") {
		t.Fatalf("trips %+v", trips)
	}
	// Every token is refused now, at the token check.
	if _, err := ks.Guard(tokens).Verify(ctx, string(raw.Reveal()), token.VerifyRequest{Venue: "binance"}); err == nil {
		t.Fatal("a token passed the engaged kill switch")
	}
	if engaged, err := r.Kill(ctx, f, reason); err != nil || engaged {
		t.Fatalf("second kill: engaged %v, %v", engaged, err)
	}
	if n := len(ks.Active()); n != 1 {
		t.Fatalf("%d trips after two kills", n)
	}
	if _, err := (responder{tokens: tokens, log: slog.New(slog.DiscardHandler)}).Kill(ctx, f, "x"); err == nil {
		t.Fatal("kill without a kill switch succeeded")
	}
}

// TestTripReason: whatever a finding's summary quotes becomes a reason the
// kill switch accepts.
func TestTripReason(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"plain", "order_size fnd_1: big order"},
		{"empty", ""},
		{"only controls", "\x00\x01\n\t"},
		{"invalid utf-8", "a\xff\xfeb"},
		{"long multibyte", strings.Repeat("é", 600)},
		{"bidi and zero-width", "a\u202eb\u200bc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tripReason(tc.in)
			e := killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: "detect.x", Actor: "detect", Reason: got}
			ks, err := killswitch.New(context.Background(), killswitch.Options{Store: memTrips(t)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Engage(context.Background(), e); err != nil {
				t.Fatalf("reason %q refused: %v", got, err)
			}
		})
	}
}

func memTrips(t *testing.T) killswitch.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db.Trips()
}

// TestFindingAlert: a finding becomes an alert with the detector, the
// severity on the alert scale, the token and venue as the subject, the
// evidence as fields and a suggested command.
func TestFindingAlert(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		f          detect.Finding
		sev        alert.Severity
		subject    alert.Subject
		action     string
		evidence   map[string]string
		noEvidence []string
	}{
		{"order size", detect.Finding{ID: "fnd_a", Time: at, Detector: detect.OrderSize, Severity: detect.SeverityCritical,
			Subject: "token:tok_a", TokenID: "tok_a", Venue: "binance", Source: "127.0.0.2", Summary: "order 10× usual",
			Evidence: detect.Evidence{Observed: 0.02, Baseline: 0.002, Threshold: 0.01, Factor: 5, Unit: "BTCUSDT quantity",
				Observations: 25, Requests: []string{"req_1"}}, Actions: []string{"alert", "freeze"}},
			alert.SeverityCritical, alert.Subject{Token: "tok_a", Venue: "binance"}, "keystile token freeze tok_a",
			map[string]string{"finding": "fnd_a", "observed": "0.02", "usual": "0.002", "threshold": "0.01", "factor": "5",
				"unit": "BTCUSDT quantity", "learned_from": "25", "source": "127.0.0.2", "requests": "req_1", "actions": "alert, freeze",
				"detector_severity": "critical"}, []string{"item", "known"}},
		{"new source", detect.Finding{Detector: detect.NewSource, Severity: detect.SeverityWarning, Subject: "token:tok_b",
			TokenID: "tok_b", Source: "10.0.0.9", Summary: "new address", Evidence: detect.Evidence{Known: 1}},
			alert.SeverityMedium, alert.Subject{Token: "tok_b"}, "keystile detect show tok_b",
			map[string]string{"source": "10.0.0.9", "known": "1"}, []string{"observed", "usual"}},
		{"venue errors", detect.Finding{Detector: detect.VenueErrors, Severity: detect.SeverityWarning, Subject: "venue:kraken",
			Venue: "kraken", Summary: "10 errors", Evidence: detect.Evidence{Observed: 10, Threshold: 10, Window: "1m0s"}},
			alert.SeverityMedium, alert.Subject{Venue: "kraken"}, "keystile panic --venue kraken",
			map[string]string{"observed": "10", "window": "1m0s"}, nil},
		{"auth failures from a source", detect.Finding{Detector: detect.AuthFailures, Severity: detect.SeverityInfo,
			Subject: "source:abc", Source: "198.51.100.1", Summary: "failures"},
			alert.SeverityInfo, alert.Subject{}, "block the source address", map[string]string{"source": "198.51.100.1"}, nil},
		{"admin hours", detect.Finding{Detector: detect.AdminHours, Severity: detect.SeverityWarning, Subject: "admin", Summary: "admin write at 03:00"},
			alert.SeverityMedium, alert.Subject{}, "keystile audit query", nil, nil},
		{"unknown severity is high", detect.Finding{Detector: detect.QueueDrops, Severity: "bogus", Subject: "detector", Summary: "drops"},
			alert.SeverityHigh, alert.Subject{}, "detect.queue_size", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := findingAlert(tc.f)
			if a.Detector != "detect."+tc.f.Detector || a.Severity != tc.sev || a.Subject != tc.subject || a.Summary != tc.f.Summary ||
				!a.Time.Equal(tc.f.Time) {
				t.Fatalf("alert %+v", a)
			}
			if !strings.Contains(a.Action, tc.action) || len(a.Action) > alert.MaxAction {
				t.Fatalf("action %q, want it to contain %q", a.Action, tc.action)
			}
			got := map[string]string{}
			for _, e := range a.Evidence {
				got[e.Key] = e.Value
			}
			for k, v := range tc.evidence {
				if got[k] != v {
					t.Errorf("evidence %s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			for _, k := range tc.noEvidence {
				if _, ok := got[k]; ok {
					t.Errorf("evidence has empty field %s", k)
				}
			}
		})
	}
}

// TestAlertNotifierSinks sends a finding that quotes what a bot sent — an
// instrument name with Slack markup, a line break, a registered secret
// and a kst_ token — through the notifier and a real dispatcher to a Slack
// and a Telegram sink on loopback: both get it, the markup is escaped
// (Slack) or inert (Telegram: no parse_mode), the line break is gone, and
// neither the secret nor the token arrives.
func TestAlertNotifierSinks(t *testing.T) {
	const canary = "CANARY-detect-alert-secret-5b1d"
	const kst = "kst_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	var mu sync.Mutex
	bodies := map[string][]byte{}
	recv := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies[name] = b
			mu.Unlock()
			if name == "telegram" {
				_, _ = io.WriteString(w, `{"ok":true,"result":{}}`)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
	}
	slackSrv, tgSrv := recv("slack"), recv("telegram")
	defer slackSrv.Close()
	defer tgSrv.Close()
	sl, err := slack.New(slack.Options{URL: func(context.Context) (secret.Value, error) { return secret.FromString(slackSrv.URL + "/hook"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := telegram.New(telegram.Options{APIURL: tgSrv.URL, ChatID: "42",
		Token: func(context.Context) (secret.Value, error) { return secret.FromString("123:telegram-bot-token"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	red := logging.NewRedactor()
	red.Register(secret.FromString(canary))
	d, err := alert.New(alert.Options{Scrubber: red, Sinks: []alert.SinkConfig{{Name: "slack", Sink: sl}, {Name: "telegram", Sink: tg}}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	logBuf := &strings.Builder{}
	var logMu sync.Mutex
	log := logging.New(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logBuf.Write(p)
	}), logging.Options{Format: "json", Redactor: red})

	item := "<!channel> <https://evil.example|login> & *x*\nforged: line " + canary + " " + kst
	f := detect.Finding{ID: "fnd_q", Time: time.Now(), Detector: detect.NewInstrument, Severity: detect.SeverityWarning,
		Subject: "token:tok_q", TokenID: "tok_q", Venue: "binance", Summary: "first order on " + item, Evidence: detect.Evidence{Item: item}}
	alertNotifier{alerts: d, log: log}.Notify(context.Background(), f)

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(bodies)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sinks reached: %d of 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var sm slack.Message
	if err := json.Unmarshal(bodies["slack"], &sm); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(strings.NewReplacer("&lt;", "", "&gt;", "", "&amp;", "").Replace(sm.Text), "<>") ||
		!strings.Contains(sm.Text, "&lt;!channel&gt; &lt;https://evil.example|login&gt; &amp;") {
		t.Fatalf("slack text not escaped: %s", sm.Text)
	}
	var tm map[string]any
	if err := json.Unmarshal(bodies["telegram"], &tm); err != nil {
		t.Fatal(err)
	}
	if _, ok := tm["parse_mode"]; ok {
		t.Fatalf("telegram message has a parse_mode: %s", bodies["telegram"])
	}
	text, _ := tm["text"].(string)
	for name, s := range map[string]string{"slack": sm.Text, "telegram": text} {
		if strings.Contains(s, "\nforged:") {
			t.Errorf("%s: a bot's line break reached the message: %q", name, s)
		}
		if !strings.Contains(s, "detect.new_instrument") || !strings.Contains(s, "tok_q") {
			t.Errorf("%s: message %q", name, s)
		}
	}
	for name, b := range bodies {
		if strings.Contains(string(b), canary) || strings.Contains(string(b), kst) {
			t.Errorf("%s received a secret: %s", name, b)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logBuf.String(), `"msg":"detect: alert"`) || strings.Contains(logBuf.String(), canary) {
		t.Fatalf("log: %s", logBuf.String())
	}
}
