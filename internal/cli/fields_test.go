package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseFields(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"simple", "api_key=AK\nsecret=S3cr=et\n", map[string]string{"api_key": "AK", "secret": "S3cr=et"}, ""},
		{"crlf comments blanks", "# c\r\n\r\napi_key=AK\r\n  \n", map[string]string{"api_key": "AK"}, ""},
		{"value kept verbatim", "secret= padded \n", map[string]string{"secret": " padded "}, ""},
		{"no equals", "api_key\n", nil, "line 1: want FIELD=VALUE"},
		{"bad name", "API_KEY=x\n", nil, "line 1: invalid field name"},
		{"duplicate", "a=1\na=2\n", nil, `line 2: field "a" given twice`},
		{"empty value", "a=\n", nil, `line 1: field "a" has an empty value`},
		{"empty input", "\n# only comments\n", nil, "no FIELD=VALUE lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFields(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d fields, want %d", len(got), len(tt.want))
			}
			for k, v := range tt.want {
				if string(got[k]) != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestParseFieldsErrorsNeverHoldValues(t *testing.T) {
	const canary = "CANARY-field-5e1f"
	for _, in := range []string{"BAD=" + canary, "a=1\na=" + canary, canary, "a=" + canary + "\n" + canary} {
		_, err := ParseFields(strings.NewReader(in))
		if err == nil {
			t.Fatalf("accepted %q", in)
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("error leaks the value: %v", err)
		}
	}
}

func TestParseFieldsTooLarge(t *testing.T) {
	in := "a=" + strings.Repeat("x", MaxFieldInput)
	if _, err := ParseFields(strings.NewReader(in)); err == nil {
		t.Fatal("accepted oversized input")
	}
}

// FuzzParseFields: never panics; on success every field name is valid,
// every value non-empty, and re-serialising and re-parsing gives the same
// map (round trip). Errors never contain input after the first '='.
func FuzzParseFields(f *testing.F) {
	for _, s := range []string{"api_key=AK\nsecret=S\n", "# c\r\n\r\na=b=c\r\n", "a\n", "A=1", "a=1\na=2", "", "\x00=\x00", "a=\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ParseFields(bytes.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for k, v := range got {
			if !fieldName.MatchString(k) || len(v) == 0 {
				t.Fatalf("invalid field %q=%q accepted", k, v)
			}
			if bytes.ContainsAny(v, "\n") {
				t.Fatalf("value with newline accepted")
			}
			if bytes.HasSuffix(v, []byte("\r")) {
				// A CR before LF is dropped; a bare trailing CR at EOF is
				// dropped too, so a value cannot end in one.
				t.Fatalf("value ending in CR")
			}
			buf.WriteString(k + "=")
			buf.Write(v)
			buf.WriteString("\n")
		}
		again, err := ParseFields(&buf)
		if err != nil {
			t.Fatalf("round trip failed: %v", err)
		}
		if len(again) != len(got) {
			t.Fatalf("round trip changed field count")
		}
		for k, v := range got {
			if !bytes.Equal(again[k], v) {
				t.Fatalf("round trip changed %q", k)
			}
		}
	})
}
