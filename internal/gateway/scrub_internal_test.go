package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
)

// Canaries of the scrubber tests: a registered credential field (the
// Redactor's), a sent signature and a sent numeric passphrase (this
// request's).
const (
	fuzzRegistered = "CANARY-fuzz-registered-secret/0001" // #nosec G101 -- test canary
	fuzzSignature  = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d0f"
	fuzzPassphrase = "8675309123456"
)

func fuzzScrubber() *scrubber {
	red := logging.NewRedactor()
	red.Register(secret.FromString(fuzzRegistered))
	st := &reqState{}
	st.addSent(fuzzSignature)
	st.addSent(fuzzPassphrase)
	return &scrubber{reg: red, sent: newSentMatcher(st.sent)}
}

// leaked reports a canary (or a fragment of one the scrubber must catch)
// in s, ignoring case.
func leaked(s string) string {
	ls := strings.ToLower(s)
	for _, v := range []string{fuzzRegistered, fuzzSignature, fuzzPassphrase} {
		lv := strings.ToLower(v)
		f := fragmentLen(len(lv))
		for j := 0; j+f <= len(lv); j++ {
			if strings.Contains(ls, lv[j:j+f]) {
				return v[:6]
			}
		}
	}
	return ""
}

// decodedStrings returns every string and number of a JSON document,
// decoded, joined by newlines.
func decodedStrings(t testing.TB, data []byte) string {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return b.String()
		}
		switch v := tok.(type) {
		case string:
			b.WriteString(v)
		case json.Number:
			b.WriteString(v.String())
		}
		b.WriteByte('\n')
	}
}

func TestScrubberJSON(t *testing.T) {
	s := fuzzScrubber()
	for _, tt := range []struct{ name, in, want string }{
		{"nothing", `{"time":1700000000000,"ts":"1700000000000"}`, `{"time":1700000000000,"ts":"1700000000000"}`},
		{"string", `{"k":"x` + fuzzRegistered + `y"}`, `{"k":"xREDACTEDy"}`},
		{"u-escaped", `{"k":"\u0043ANARY-fuzz-registered-secret\/0001"}`, `{"k":"REDACTED"}`},
		{"escapes kept around", `{"k":"a\"b\n` + fuzzSignature + `"}`, `{"k":"a\"b\u000aREDACTED"}`},
		{"upper", `["` + strings.ToUpper(fuzzSignature) + `"]`, `["REDACTED"]`},
		{"prefix", `{"sign":"` + fuzzSignature[:16] + `…"}`, `{"sign":"REDACTED…"}`},
		{"short prefix kept", `{"sign":"` + fuzzSignature[:15] + `"}`, `{"sign":"` + fuzzSignature[:15] + `"}`},
		{"bare number", `{"p":` + fuzzPassphrase + `,"q":1}`, `{"p":"REDACTED","q":1}`},
		{"number inside", `[1` + fuzzPassphrase + `9]`, `["REDACTED"]`},
		{"key", `{"` + fuzzRegistered + `":true}`, `{"REDACTED":true}`},
		{"top-level string", ` "` + fuzzRegistered + `" `, ` "REDACTED" `},
		// An escape's hex digits and the text after it spell a fragment
		// only in the raw bytes: re-encoded without the escape, or
		// replaced when the re-encoding needs one.
		{"escape spells a fragment", `{"0":"\u7d9f1A3C5e7B9d0f"}`, "{\"0\":\"\u7d9f1A3C5e7B9d0f\"}"},
		{"re-encoding spells one", `{"k":"\u000a1c3e5b7d9f1a3c"}`, `{"k":"REDACTED"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := s.body([]byte(tt.in), "application/json")
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("invalid JSON: %s", got)
			}
		})
	}
	in := []byte(`{"a":"\/no secret here\u0041"}`)
	if got := s.body(in, "application/json"); !same(got, in) {
		t.Errorf("an answer without secrets was copied: %s", got)
	}
	if got := s.body([]byte("key="+fuzzRegistered+"&ts=1"), "text/plain"); string(got) != "key=REDACTED&ts=1" {
		t.Errorf("plain: %s", got)
	}
}

// BenchmarkScrubAnswer measures scrubbing a 4 KiB JSON answer that holds no
// secret (the common case: no allocation beyond the Redactor's) and one
// that echoes one.
func BenchmarkScrubAnswer(b *testing.B) {
	s := fuzzScrubber()
	var doc strings.Builder
	doc.WriteString(`{"retCode":0,"time":1700000000000,"result":{"list":[`)
	for i := 0; doc.Len() < 4096; i++ {
		if i > 0 {
			doc.WriteByte(',')
		}
		doc.WriteString(`{"orderId":"1f0e9d8c7b6a5f4e3d2c1b0a","symbol":"BTCUSDT","price":"43250.10","qty":"0.01","side":"Buy"}`)
	}
	doc.WriteString(`]}}`)
	clean := []byte(doc.String())
	echo := []byte(strings.Replace(doc.String(), `"side":"Buy"`, `"side":"`+strings.ToUpper(fuzzSignature)+`"`, 1))
	for _, c := range []struct {
		name string
		in   []byte
	}{{"clean", clean}, {"echo", echo}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				s.body(c.in, "application/json")
			}
		})
	}
}

// FuzzScrubJSON: for any valid JSON answer, the scrubbed answer is valid
// JSON and holds no canary — not raw, not in any case, not behind escapes,
// not as a fragment the thresholds cover. For any answer, the raw output
// holds none.
func FuzzScrubJSON(f *testing.F) {
	for _, seed := range []string{
		`{"retCode":0,"result":{"orderId":"1"},"time":1700000000000}`,
		`{"code":"0","data":[{"ordId":"2","ts":"1700000000000"}]}`,
		`{"k":"` + fuzzRegistered + `"}`,
		`{"k":"\u0043\u0041NARY-fuzz-registered-secret\/0001"}`,
		`["` + strings.ToUpper(fuzzSignature) + `",` + fuzzPassphrase + `]`,
		`{"` + fuzzSignature[10:40] + `":[1` + fuzzPassphrase + `,true,null,-1.5e3]}`,
		`"` + fuzzRegistered[:20] + `\t"`,
		`{"a":"\ud83d\ude00` + fuzzSignature + `\ud800"}`,
		"key=" + fuzzRegistered,
		`{"broken":"` + fuzzSignature,
		`[]`, `0`, `""`,
	} {
		f.Add([]byte(seed))
	}
	s := fuzzScrubber()
	f.Fuzz(func(t *testing.T, in []byte) {
		out := s.body(in, "application/json")
		if json.Valid(in) {
			if !json.Valid(out) {
				t.Fatalf("valid JSON in, invalid out:\n in  %q\n out %q", in, out)
			}
			if l := leaked(decodedStrings(t, out)); l != "" {
				t.Fatalf("decoded output holds %s…:\n in  %q\n out %q", l, in, out)
			}
		}
		if l := leaked(string(out)); l != "" {
			t.Fatalf("output holds %s…:\n in  %q\n out %q", l, in, out)
		}
		plain := s.body(in, "text/plain")
		if l := leaked(string(plain)); l != "" {
			t.Fatalf("plain output holds %s…: %q", l, plain)
		}
	})
}
