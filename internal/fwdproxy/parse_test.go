package fwdproxy_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/fwdproxy"
)

const tok = "kst_test_3yPJ6nXvYdQz1B8sT0rWmKa4LcHf7gEiUo2Np5VbRjZx9q"

func TestParseProxyAuthorization(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{"basic, token as user", "Basic " + b64(tok+":"), tok, nil},
		{"basic, token as password", "Basic " + b64("bot:"+tok), tok, nil},
		{"basic, lower-case scheme", "basic " + b64(tok+":"), tok, nil},
		{"bearer", "Bearer " + tok, tok, nil},
		{"bearer, extra spaces", "  BEARER   " + tok + "  ", tok, nil},
		{"empty", "", "", fwdproxy.ErrNoCredentials},
		{"blank", "   ", "", fwdproxy.ErrNoCredentials},
		{"no scheme", tok, "", fwdproxy.ErrBadCredentials},
		{"digest", "Digest " + tok, "", fwdproxy.ErrBadCredentials},
		{"basic, not base64", "Basic !!!", "", fwdproxy.ErrBadCredentials},
		{"basic, no colon", "Basic " + b64(tok), "", fwdproxy.ErrBadCredentials},
		{"basic, no token", "Basic " + b64("alice:secret"), "", fwdproxy.ErrBadCredentials},
		{"bearer, not a token", "Bearer abc", "", fwdproxy.ErrBadCredentials},
		{"bearer, control byte", "Bearer " + tok + "\x00", "", fwdproxy.ErrBadCredentials},
		{"basic, token with space", "Basic " + b64("kst_a b:"), "", fwdproxy.ErrBadCredentials},
		{"too long", "Bearer kst_" + strings.Repeat("a", 2000), "", fwdproxy.ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fwdproxy.ParseProxyAuthorization(tc.in)
			if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseAuthority(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"api.binance.com:443", "api.binance.com", 443, true},
		{"API.Binance.COM.:443", "api.binance.com", 443, true},
		{"127.0.0.1:8443", "127.0.0.1", 8443, true},
		{"[::1]:443", "::1", 443, true},
		{"[::ffff:127.0.0.1]:443", "127.0.0.1", 443, true},
		{"api.binance.com", "", 0, false},
		{"api.binance.com:", "", 0, false},
		{":443", "", 0, false},
		{"api.binance.com:0", "", 0, false},
		{"api.binance.com:65536", "", 0, false},
		{"api.binance.com:+443", "", 0, false},
		{"api.binance.com:0443", "api.binance.com", 443, true},
		{"api.binance.com:000443", "", 0, false},
		{"::1:443", "", 0, false},
		{"[127.0.0.1]:443", "", 0, false},
		{"user@api.binance.com:443", "", 0, false},
		{"api.binance.com:443/path", "", 0, false},
		{"*.binance.com:443", "", 0, false},
		{"api binance.com:443", "", 0, false},
		{"[fe80::1%eth0]:443", "", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			h, p, err := fwdproxy.ParseAuthority(tc.in)
			if (err == nil) != tc.ok || h != tc.host || p != tc.port {
				t.Fatalf("got %q %d %v", h, p, err)
			}
			if err != nil && !errors.Is(err, fwdproxy.ErrBadAuthority) {
				t.Fatalf("error %v is not ErrBadAuthority", err)
			}
		})
	}
}

func FuzzParseProxyAuthorization(f *testing.F) {
	for _, s := range []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(tok+":")), "Bearer " + tok, "Basic Og==", "bearer kst_", "Digest x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := fwdproxy.ParseProxyAuthorization(s)
		if err != nil {
			if got != "" {
				t.Fatalf("error with a token: %q", got)
			}
			return
		}
		// A token found has the token's shape, and reads back the same
		// both ways a client may send it.
		if !strings.HasPrefix(got, "kst_") || strings.ContainsAny(got, " \t\r\n\x00") {
			t.Fatalf("ParseProxyAuthorization(%q) = %q", s, got)
		}
		for _, again := range []string{"Bearer " + got, "Basic " + base64.StdEncoding.EncodeToString([]byte(got+":"))} {
			if g, err := fwdproxy.ParseProxyAuthorization(again); err != nil || g != got {
				t.Fatalf("round trip of %q via %q: %q, %v", got, again, g, err)
			}
		}
	})
}

func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"api.binance.com:443", "[::1]:443", "127.0.0.1:1", "x:0", "a@b:1", "[::ffff:1.2.3.4]:65535", ":", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, p, err := fwdproxy.ParseAuthority(s)
		if err != nil {
			return
		}
		if p == 0 || h == "" {
			t.Fatalf("ParseAuthority(%q) = %q, %d", s, h, p)
		}
		// Joining and parsing again is the identity on the normal form.
		h2, p2, err := fwdproxy.ParseAuthority(fwdproxy.JoinAuthority(h, p))
		if err != nil || h2 != h || p2 != p {
			t.Fatalf("round trip of %q: %q %d -> %q %d %v", s, h, p, h2, p2, err)
		}
	})
}
