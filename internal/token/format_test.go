package token

import (
	"bytes"
	"crypto/rand"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

func TestBodyRoundTrip(t *testing.T) {
	var ff [32]byte
	for i := range ff {
		ff[i] = 0xff
	}
	one := [32]byte{31: 1}
	tests := []struct {
		name string
		in   [32]byte
		want string
	}{
		{"zero", [32]byte{}, strings.Repeat("0", bodyLen)},
		{"one", one, strings.Repeat("0", bodyLen-1) + "1"},
		{"max", ff, maxBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, bodyLen)
			in := tt.in
			encodeBody(dst, &in)
			if string(dst) != tt.want {
				t.Fatalf("encode = %s, want %s", dst, tt.want)
			}
			got, ok := decodeBody(string(dst))
			if !ok || got != tt.in {
				t.Fatalf("decode(%s) = %x, %v", dst, got, ok)
			}
		})
	}
	t.Run("random", func(t *testing.T) {
		for range 2000 {
			var b [32]byte
			_, _ = rand.Read(b[:])
			dst := make([]byte, bodyLen)
			in := b
			encodeBody(dst, &in)
			got, ok := decodeBody(string(dst))
			if !ok || got != b {
				t.Fatalf("round trip of %x: %s -> %x %v", b, dst, got, ok)
			}
			if string(dst) > maxBody {
				t.Fatalf("%s above maxBody", dst)
			}
		}
	})
	t.Run("overflow", func(t *testing.T) {
		// maxBody + 1 in the last digit: 2^256 does not fit.
		over := maxBody[:bodyLen-1] + "2"
		if _, ok := decodeBody(over); ok {
			t.Fatal("2^256 decoded")
		}
		if _, ok := decodeBody(strings.Repeat("z", bodyLen)); ok {
			t.Fatal("zzz... decoded")
		}
	})
}

// mintString mints a token and returns it as a string (tests only).
func mintString(t testing.TB, test bool) string {
	t.Helper()
	v, d, err := mint(test)
	if err != nil {
		t.Fatal(err)
	}
	s := string(v.Reveal())
	if Digest(s) != d {
		t.Fatal("digest mismatch")
	}
	return s
}

func TestMintParse(t *testing.T) {
	for _, test := range []bool{false, true} {
		for range 500 {
			s := mintString(t, test)
			p, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse(minted) = %v", err)
			}
			if p.Test != test || !strings.HasPrefix(s, p.Prefix()) || len(s) != Len {
				t.Fatalf("Parse = %+v for test=%v, len %d", p, test, len(s))
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := mintString(t, false)
	body := good[prefixLen : prefixLen+bodyLen]
	// A body above 2^256-1 with a correct checksum must still be refused.
	overBody := strings.Repeat("z", bodyLen)
	sum := make([]byte, sumLen)
	encodeSum(sum, crc32.ChecksumIEEE([]byte(overBody)))
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"prefix only", PrefixLive},
		{"short", good[:Len-1]},
		{"long", good + "0"},
		{"other prefix", "kst_demo_" + good[prefixLen:]},
		{"upper prefix", "KST_LIVE_" + good[prefixLen:]},
		{"bad char in body", PrefixLive + "-" + body[1:] + good[prefixLen+bodyLen:]},
		{"bad char in sum", good[:Len-1] + "_"},
		{"wrong checksum", good[:Len-6] + "000000"},
		{"live body with test prefix", PrefixTest + good[prefixLen:] + ""},
		{"overflowing body", PrefixLive + overBody + string(sum)},
		{"whitespace", " " + good[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "live body with test prefix" {
				// The checksum covers only the body, so swapping the
				// prefix yields another well-formed (never issued) token.
				if !LooksValid(tt.in) {
					t.Fatal("prefix swap should parse")
				}
				return
			}
			_, err := Parse(tt.in)
			if !errors.Is(err, ErrMalformed) || LooksValid(tt.in) {
				t.Fatalf("Parse(%q) = %v, want ErrMalformed", tt.in, err)
			}
			if strings.Contains(err.Error(), good[prefixLen:prefixLen+8]) {
				t.Fatal("error echoes the token")
			}
		})
	}
}

// TestSingleCharChange proves every change of one character of a minted
// token is refused (live and test prefixes differ in four characters).
func TestSingleCharChange(t *testing.T) {
	chars := alphabet + "_-!. \x00\xff"
	for n := range 5 {
		s := mintString(t, n%2 == 0)
		b := []byte(s)
		for i := range b {
			orig := b[i]
			for j := 0; j < len(chars); j++ {
				if chars[j] == orig {
					continue
				}
				b[i] = chars[j]
				m := string(b)
				if LooksValid(m) {
					t.Fatalf("changed char %d of a token to %q and it still parses", i, chars[j])
				}
			}
			b[i] = orig
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(mintString(f, false))
	f.Add(mintString(f, true))
	f.Add("")
	f.Add(PrefixLive + strings.Repeat("0", bodyLen+sumLen))
	f.Add(PrefixTest + maxBody + "000000")
	f.Add("kst_live_\xff\xfe")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) >= randomBytes+2 {
			// Build a token from the input's bytes: it must parse, and a
			// change of one character (position and value from the
			// input) must not.
			var rnd [randomBytes]byte
			copy(rnd[:], s)
			buf := make([]byte, Len)
			copy(buf, PrefixTest)
			encodeBody(buf[prefixLen:prefixLen+bodyLen], &rnd)
			encodeSum(buf[prefixLen+bodyLen:], crc32.ChecksumIEEE(buf[prefixLen:prefixLen+bodyLen]))
			if !LooksValid(string(buf)) {
				t.Fatalf("built token %q does not parse", buf)
			}
			i, c := int(s[randomBytes])%Len, s[randomBytes+1]
			if buf[i] != c {
				buf[i] = c
				if LooksValid(string(buf)) {
					t.Fatalf("one-character change at %d still parses: %q", i, buf)
				}
			}
		}
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || LooksValid(s) {
				t.Fatalf("inconsistent: %v / %v", err, LooksValid(s))
			}
			return
		}
		// Accepted: the body must decode and re-encode to itself, with the
		// same checksum (the canonical-form round trip).
		body, ok := decodeBody(s[prefixLen : prefixLen+bodyLen])
		if !ok {
			t.Fatal("accepted a body that does not decode")
		}
		buf := make([]byte, Len)
		copy(buf, p.Prefix())
		encodeBody(buf[prefixLen:prefixLen+bodyLen], &body)
		encodeSum(buf[prefixLen+bodyLen:], crc32.ChecksumIEEE(buf[prefixLen:prefixLen+bodyLen]))
		if !bytes.Equal(buf, []byte(s)) {
			t.Fatalf("round trip %q -> %q", s, buf)
		}
	})
}

func TestCRCMatchesStdlib(t *testing.T) {
	for n := range 100 {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if got, want := crcIEEE(b), crc32.ChecksumIEEE(b); got != want {
			t.Fatalf("crcIEEE(%x) = %08x, want %08x", b, got, want)
		}
	}
	// Known answer: CRC-32/IEEE of "123456789" is 0xCBF43926.
	if got := crcIEEE([]byte("123456789")); got != 0xCBF43926 {
		t.Fatalf("check value %08x", got)
	}
}
