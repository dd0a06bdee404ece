package gateway

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzStripQueryTokens: no panic; the result is the input's pairs, in
// order, minus those holding a token; no pair of the result holds "kst_"
// in any of the decodings checked.
func FuzzStripQueryTokens(f *testing.F) {
	f.Add("a=1&token=kst_live_abc&b=2")
	f.Add("k=%256Bst%255F")
	f.Add("kst_=1")
	f.Add("&&a=%zz&")
	f.Fuzz(func(t *testing.T, raw string) {
		out := stripQueryTokens(raw)
		if out == raw && !strings.Contains(strings.ToLower(raw), "kst_") && !strings.Contains(raw, "%") {
			return
		}
		in := strings.Split(raw, "&")
		i := 0
		for _, p := range strings.Split(out, "&") {
			if out == "" {
				break
			}
			if holdsToken(p) {
				t.Fatalf("stripQueryTokens(%q) = %q keeps %q", raw, out, p)
			}
			for i < len(in) && in[i] != p {
				i++
			}
			if i == len(in) {
				t.Fatalf("stripQueryTokens(%q) = %q: %q is not an input pair in order", raw, out, p)
			}
			i++
		}
	})
}

// FuzzCleanPath: no panic; a path cleanPath accepts has no dot segment
// in its decoded form and decodes without error.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/v/api/order", "/v/..;/w", "/v/%252e%252e/", "/v/%c0%ae", "/v/a%25zz", "/v/%ef%bc%8e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !cleanPath(p) {
			return
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", p, err)
		}
		for _, seg := range strings.Split(dec, "/") {
			if seg == "." || seg == ".." || strings.HasPrefix(seg, "..;") {
				t.Fatalf("accepted %q with dot segment %q", p, seg)
			}
		}
		if strings.Contains(dec, "\\") {
			t.Fatalf("accepted %q with a backslash", p)
		}
	})
}

func TestDotSegment(t *testing.T) {
	for seg, want := range map[string]bool{
		".": true, "..": true, "...": true, "..;x": true, ". .": true, " ..": true, ";x": true,
		"": false, "a": false, ".a": false, "a.": false, "..a": false, "a;b": false,
	} {
		if got := dotSegment(seg); got != want {
			t.Errorf("dotSegment(%q) = %v, want %v", seg, got, want)
		}
	}
}
