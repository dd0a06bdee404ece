package sqlite

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// wantHeader is h as it reads back: strings made valid UTF-8.
func wantHeader(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		var c []string
		if vs != nil {
			c = []string{}
		}
		for _, v := range vs {
			c = append(c, strings.ToValidUTF8(v, "\uFFFD"))
		}
		out[strings.ToValidUTF8(k, "\uFFFD")] = c
	}
	return out
}

func TestHeaderJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"empty", http.Header{}},
		{"content type", http.Header{"Content-Type": {"application/json"}}},
		{"several", http.Header{"B": {"1", "2"}, "A": {`q"uo\te`}, "Content-Language": {"fr"}}},
		{"control and unicode", http.Header{"X": {"a\x00b\x1fc\td", "héllo ✓ <&>"}}},
		{"invalid utf-8", http.Header{"X": {"\xff\xfe ok"}}},
		{"nil values", http.Header{"X": nil, "Y": {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := headerJSON(tc.h)
			var got http.Header
			if err := json.Unmarshal([]byte(enc), &got); err != nil {
				t.Fatalf("%s: %v", enc, err)
			}
			if want := wantHeader(tc.h); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s read back as %#v, want %#v", enc, got, want)
			}
		})
	}
}

// FuzzHeaderJSON: any header encodes to JSON that reads back as itself.
func FuzzHeaderJSON(f *testing.F) {
	f.Add("Content-Type", "application/json", "")
	f.Add("X", "\x00\"\\\xff", "é")
	f.Fuzz(func(t *testing.T, k, v1, v2 string) {
		h := http.Header{k: {v1, v2}}
		var got http.Header
		if err := json.Unmarshal([]byte(headerJSON(h)), &got); err != nil {
			t.Fatal(err)
		}
		if want := wantHeader(h); !reflect.DeepEqual(got, want) {
			t.Fatalf("%#v read back as %#v", want, got)
		}
	})
}
