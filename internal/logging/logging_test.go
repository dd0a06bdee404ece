package logging

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/keystile/keystile/internal/secret"
)

// Canary secrets: no test output may contain them in any encoding.
const (
	canary  = "canary-S3cret/value+with?odd&chars=1"
	canary2 = "second-canary-0123456789"
	liveTok = "kst_live_" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ0123"
)

func allForms(v string) []string {
	h := hex.EncodeToString([]byte(v))
	return []string{v, h, strings.ToUpper(h),
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		url.QueryEscape(v)}
}

func assertClean(t *testing.T, out string) {
	t.Helper()
	for _, c := range []string{canary, canary2} {
		for _, f := range allForms(c) {
			if strings.Contains(out, f) {
				t.Fatalf("output contains canary form %q:\n%s", f, out)
			}
		}
	}
	if strings.Contains(out, liveTok[9:]) {
		t.Fatalf("output contains client token:\n%s", out)
	}
}

type creds struct {
	User   string
	Secret string
	Nested struct{ Key []byte }
}

type stringer struct{ s string }

func (s stringer) String() string { return "stringer(" + s.s + ")" }

func newRedactor() *Redactor {
	r := NewRedactor()
	r.Register(secret.FromString(canary))
	r.Register(secret.FromString(canary2))
	return r
}

func TestCanariesNeverLogged(t *testing.T) {
	enc := allForms(canary)
	cases := []struct {
		name string
		log  func(l *slog.Logger)
	}{
		{"message", func(l *slog.Logger) { l.Debug("the secret is " + canary) }},
		{"string attr", func(l *slog.Logger) { l.Debug("m", "k", "x"+canary+"y") }},
		{"hex lower", func(l *slog.Logger) { l.Debug("m", "k", enc[1]) }},
		{"hex upper", func(l *slog.Logger) { l.Debug("m", "k", enc[2]) }},
		{"base64 std", func(l *slog.Logger) { l.Debug("m", "k", enc[3]) }},
		{"base64 raw", func(l *slog.Logger) { l.Debug("m", "k", enc[4]) }},
		{"base64 url", func(l *slog.Logger) { l.Debug("m", "k", enc[5]) }},
		{"base64 raw url", func(l *slog.Logger) { l.Debug("m", "k", enc[6]) }},
		{"query escaped", func(l *slog.Logger) { l.Debug("m", "url", "https://x/?a="+enc[7]) }},
		{"nested group", func(l *slog.Logger) {
			l.Debug("m", slog.Group("a", slog.Group("b", slog.String("c", canary2))))
		}},
		{"error", func(l *slog.Logger) { l.Debug("m", "err", fmt.Errorf("sign: %w", errors.New("bad key "+canary))) }},
		{"bytes", func(l *slog.Logger) { l.Debug("m", "body", []byte(`{"k":"`+canary+`"}`)) }},
		{"stringer", func(l *slog.Logger) { l.Debug("m", "s", stringer{canary}) }},
		{"struct via Any", func(l *slog.Logger) {
			c := creds{User: "bob", Secret: canary}
			c.Nested.Key = []byte(canary2)
			l.Debug("m", "creds", c, "ptr", &c)
		}},
		{"map via Any", func(l *slog.Logger) { l.Debug("m", "m", map[string]any{"x": canary}) }},
		{"header map", func(l *slog.Logger) {
			l.Debug("m", "h", http.Header{"X-Api-Key": {"plain-key-value"}, "X-Other": {canary}})
		}},
		{"url values", func(l *slog.Logger) {
			l.Debug("m", "q", url.Values{"signature": {"sigsig"}, "note": {canary2}})
		}},
		{"url", func(l *slog.Logger) {
			u, _ := url.Parse("https://u:" + url.QueryEscape(canary2) + "@h.example/p?token=" + url.QueryEscape(canary))
			l.Debug("m", "u", u)
		}},
		{"secret.Value", func(l *slog.Logger) { l.Debug("m", "v", secret.FromString(canary)) }},
		{"client token", func(l *slog.Logger) { l.Debug("bot sent "+liveTok, "auth", "Bearer "+liveTok) }},
		{"WithAttrs", func(l *slog.Logger) { l.With("k", canary).Debug("m") }},
		{"WithGroup+WithAttrs", func(l *slog.Logger) { l.WithGroup("g").With("k", canary).WithGroup(canary2).Info("m", "x", canary) }},
		{"key is secret", func(l *slog.Logger) { l.Debug("m", canary, 1) }},
	}
	for _, format := range []string{"text", "json"} {
		for _, tc := range cases {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				var buf bytes.Buffer
				l := New(&buf, Options{Level: slog.LevelDebug, Format: format, Redactor: newRedactor()})
				tc.log(l)
				if buf.Len() == 0 {
					t.Fatal("nothing logged")
				}
				assertClean(t, buf.String())
				if !strings.Contains(buf.String(), "REDACTED") {
					t.Errorf("no REDACTED marker:\n%s", buf.String())
				}
			})
		}
	}
}

func TestSensitiveKeys(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Options{Format: "json"})
	l.Info("req",
		"Authorization", "Bearer abc",
		"X_API_KEY", "k1",
		"client_secret", "cs",
		"password", "pw",
		"x-sign-date", "20260101",
		"path", "/v1/orders",
		"h", http.Header{"Cookie": {"c=1"}, "Accept": {"application/json"}},
		"q", url.Values{"signature": {"deadbeef"}, "symbol": {"BTCUSDT"}},
		"u", &url.URL{Scheme: "https", Host: "h", Path: "/p", RawQuery: "api_key=kkk&limit=5"},
	)
	out := buf.String()
	for _, bad := range []string{"Bearer abc", `"k1"`, `"cs"`, `"pw"`, "c=1", "deadbeef", "kkk"} {
		if strings.Contains(out, bad) {
			t.Errorf("sensitive value %q logged:\n%s", bad, out)
		}
	}
	for _, good := range []string{`"x-sign-date":"20260101"`, `"path":"/v1/orders"`, `"Accept":"application/json"`,
		`"symbol":"BTCUSDT"`, `"signature":"REDACTED"`, `"Cookie":"REDACTED"`, "limit=5", "api_key=REDACTED"} {
		if !strings.Contains(out, good) {
			t.Errorf("missing %s in:\n%s", good, out)
		}
	}
}

func TestUnrelatedUntouched(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Options{Format: "text", Redactor: newRedactor()})
	l.Info("order placed", "symbol", "BTC-USD", "qty", 3, "note", "canary-S3cret", "tok", "kst_live_short")
	want := `level=INFO msg="order placed" symbol=BTC-USD qty=3 note=canary-S3cret tok=kst_live_short`
	if got := strings.TrimSpace(buf.String()); !strings.HasSuffix(got, want) {
		t.Errorf("got %s\nwant suffix %s", got, want)
	}
}

func TestRegisterAfterWithAttrs(t *testing.T) {
	var buf bytes.Buffer
	r := NewRedactor()
	l := New(&buf, Options{Redactor: r}).With("cfg", "key="+canary)
	l.Info("before") // caches the derived handler
	if !strings.Contains(buf.String(), canary) {
		t.Fatal("precondition: unregistered value should be logged as is")
	}
	buf.Reset()
	r.Register(secret.FromString(canary))
	l.Info("after")
	assertClean(t, buf.String())
	buf.Reset()
	r.Unregister(secret.FromString(canary))
	l.Info("unregistered")
	if !strings.Contains(buf.String(), canary) {
		t.Errorf("unregistered value still redacted: %s", buf.String())
	}
}

func TestRedactor(t *testing.T) {
	r := NewRedactor()
	r.Register(secret.FromString("short"))
	r.Register(secret.FromString("REDACTED"))
	if r.Len() != 0 {
		t.Fatalf("short or marker value registered")
	}
	r.Register(secret.FromString(canary))
	r.Register(secret.FromString(canary))
	r.Unregister(secret.FromString(canary))
	if got := r.ScrubString("a" + canary + "b"); got != "aREDACTEDb" {
		t.Errorf("after one of two unregisters: %q", got)
	}
	in := []byte("nothing to see here")
	if out := r.Scrub(in); &out[0] != &in[0] {
		t.Error("Scrub copied an input without matches")
	}
	tests := []struct{ name, in, want string }{
		{"plain", canary, "REDACTED"},
		{"twice", canary + canary, "REDACTEDREDACTED"},
		{"padded b64 whole", base64.StdEncoding.EncodeToString([]byte(canary)), "REDACTED"},
		{"token", "x " + liveTok + " y", "x kst_live_REDACTED y"},
		{"test token", "kst_test_" + strings.Repeat("Z", 50), "kst_test_REDACTED"},
		{"not a token", "kst_live_" + strings.Repeat("a", 42), "kst_live_" + strings.Repeat("a", 42)},
		// The 18-byte runs either side are fragments of the 36-byte canary.
		{"chained", "canary-S3cret/valu" + canary + "e+with?odd&chars=1", "REDACTEDREDACTEDREDACTED"},
		{"chained short", "canary-S3cr" + canary + "chars=1", "canary-S3crREDACTEDchars=1"},
		{"upper-cased", "x" + strings.ToUpper(canary) + "y", "xREDACTEDy"},
		{"upper-cased hex", strings.ToUpper(hex.EncodeToString([]byte(canary))), "REDACTED"},
		{"prefix fragment", "key " + canary[:16] + "... invalid", "key REDACTED... invalid"},
		{"suffix fragment", "..." + canary[len(canary)-20:] + "!", "...REDACTED!"},
		{"short fragment", "key " + canary[:15] + "...", "key " + canary[:15] + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.ScrubString(tt.in); got != tt.want {
				t.Errorf("ScrubString(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	var nilR *Redactor
	if got := nilR.ScrubString(liveTok); got != "kst_live_REDACTED" {
		t.Errorf("nil redactor: %q", got)
	}
}

func TestConcurrentRegisterAndLog(t *testing.T) {
	r := NewRedactor()
	var buf syncBuf
	l := New(&buf, Options{Redactor: r}).With("a", 1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				v := secret.FromString(fmt.Sprintf("value-%d-%04d-xyz", g, i))
				r.Register(v)
				l.Info("m", "v", fmt.Sprintf("value-%d-%04d-xyz", g, i))
				r.Unregister(v)
			}
		}()
	}
	wg.Wait()
	if strings.Contains(buf.String(), "-xyz") {
		t.Error("a value registered before logging leaked")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
		err  bool
	}{{"debug", slog.LevelDebug, false}, {"", slog.LevelInfo, false}, {"INFO", slog.LevelInfo, false},
		{"warn", slog.LevelWarn, false}, {"warning", slog.LevelWarn, false}, {"error", slog.LevelError, false}, {"loud", 0, true}}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, %v", tt.in, got, err)
			}
			if tt.err && !errors.Is(err, ErrLevel) {
				t.Errorf("error %v is not ErrLevel", err)
			}
		})
	}
}

func TestLevelFiltering(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Options{Level: slog.LevelWarn})
	l.Info("hidden")
	l.Warn("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "shown") {
		t.Errorf("got %q", buf.String())
	}
}

func FuzzScrub(f *testing.F) {
	f.Add([]byte(canary), []byte("x"+canary+"y"))
	f.Add([]byte("aaaaaaaa"), []byte("aaaaaaaaaaaaaaaaa"))
	f.Add([]byte("xREDACTE"), []byte("xxREDACTEx"))
	f.Add([]byte("12345678"), []byte(liveTok+"12345678"))
	f.Fuzz(func(t *testing.T, sec, in []byte) {
		r := NewRedactor()
		r.Register(secret.New(append([]byte(nil), sec...)))
		out := r.Scrub(in)
		if r.Len() == 1 && bytes.Contains(out, sec) {
			t.Fatalf("Scrub(%q) = %q contains the secret %q", in, out, sec)
		}
		if r.Len() == 0 && string(out) != (*Redactor)(nil).ScrubString(string(in)) {
			t.Fatalf("no registered value but output changed beyond tokens")
		}
	})
}

// TestBinarySecret: a secret that is not valid UTF-8 (a raw key, a
// derived signing key) is scrubbed byte for byte, also next to an upper
// case echo of its ASCII part. Regression for a CI fuzz finding: patterns
// were lower-cased with strings.ToLower, which turns invalid bytes into
// U+FFFD, so the raw value never matched.
func TestBinarySecret(t *testing.T) {
	for _, sec := range []string{"xxREEDA\xc3", "\xff\xfe\xfdabcdefgh", "k\x80\x81\x82\x83\x84\x85\x86"} {
		r := NewRedactor()
		r.Register(secret.New([]byte(sec)))
		for _, in := range []string{sec, "a" + sec + "b", strings.ToUpper(sec)} {
			if out := r.ScrubString(in); strings.Contains(out, sec) {
				t.Errorf("ScrubString(%q) = %q keeps the secret", in, out)
			}
		}
	}
}
