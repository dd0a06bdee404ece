package secret

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const canary = "CANARY-s3cr3t-7f1d2a"

func TestValueNeverPrints(t *testing.T) {
	v := FromString(canary)
	type holder struct {
		Name string
		Key  Value
		Ptr  *Value
	}
	h := holder{Name: "n", Key: v, Ptr: &v}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10s", "%-10v"} {
		for _, arg := range []any{v, &v, h, &h, []Value{v}, map[string]Value{"k": v}} {
			out := fmt.Sprintf(format, arg)
			if strings.Contains(out, canary) || strings.Contains(out, fmt.Sprintf("%x", canary)) {
				t.Errorf("Sprintf(%q, %T) leaked: %s", format, arg, out)
			}
		}
	}
	if got := v.String(); got != Redacted {
		t.Errorf("String() = %q", got)
	}
}

func TestValueMarshalFails(t *testing.T) {
	v := FromString(canary)
	if out, err := json.Marshal(struct{ K Value }{v}); err == nil || bytes.Contains(out, []byte(canary)) {
		t.Errorf("json.Marshal: out=%q err=%v; want error", out, err)
	}
	if out, err := xml.Marshal(struct{ K Value }{v}); err == nil || bytes.Contains(out, []byte(canary)) {
		t.Errorf("xml.Marshal: out=%q err=%v; want error", out, err)
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(struct{ K Value }{v}); err == nil || bytes.Contains(buf.Bytes(), []byte(canary)) {
		t.Errorf("gob: err=%v; want error", err)
	}
}

func TestValueLogs(t *testing.T) {
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		l := slog.New(h)
		v := FromString(canary)
		l.Info("msg", "key", v, "ptr", &v, slog.Any("any", v), slog.Group("g", "k", v))
	}
	if bytes.Contains(buf.Bytes(), []byte(canary)) {
		t.Fatalf("log leaked: %s", buf.String())
	}
	if !bytes.Contains(buf.Bytes(), []byte(Redacted)) {
		t.Fatalf("log lacks %s: %s", Redacted, buf.String())
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", "abc", "abc", true},
		{"different", "abc", "abd", false},
		{"prefix", "abc", "ab", false},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromString(tt.a).Equal(FromString(tt.b)); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
			if got := FromString(tt.a).EqualBytes([]byte(tt.b)); got != tt.want {
				t.Errorf("EqualBytes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWipeAndClone(t *testing.T) {
	v := New([]byte(canary))
	c := v.Clone()
	v.Wipe()
	if !bytes.Equal(v.Reveal(), make([]byte, len(canary))) {
		t.Fatalf("Wipe left bytes: %q", v.Reveal())
	}
	if string(c.Reveal()) != canary {
		t.Fatalf("Clone shares bytes with the original")
	}
	if (Value{}).Clone().Len() != 0 || !(Value{}).IsZero() {
		t.Fatal("zero Value not empty")
	}
}
