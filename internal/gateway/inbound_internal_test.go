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

// BenchmarkCleanPath measures the path check against its baseline, the
// single decode-and-split of the check it replaced, on a typical order
// path and on an escaped one.
func BenchmarkCleanPath(b *testing.B) {
	for _, p := range []string{"/binance/api/v3/order", "/generic/api/v1/items/a%20b%2Bc"} {
		b.Run("baseline "+p, func(b *testing.B) {
			for b.Loop() {
				dec, _ := url.PathUnescape(p)
				for _, seg := range strings.Split(dec, "/") {
					_ = seg == "." || seg == ".."
				}
			}
		})
		b.Run("cleanPath "+p, func(b *testing.B) {
			for b.Loop() {
				cleanPath(p)
			}
		})
	}
	b.Run("stripQueryTokens", func(b *testing.B) {
		q := "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.001&price=30000&newClientOrderId=x%2Fy"
		for b.Loop() {
			stripQueryTokens(q)
		}
	})
}
