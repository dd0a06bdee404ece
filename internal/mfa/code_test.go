package mfa_test

import (
	"encoding/base32"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
)

func TestParseCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		kind mfa.Kind
		norm string
	}{
		{"totp", "123456", mfa.KindTOTP, "123456"},
		{"totp with space", "123 456", mfa.KindTOTP, "123456"},
		{"totp with dash and tabs", "\t123-456 ", mfa.KindTOTP, "123456"},
		{"recovery", "abcd-efgh-jkmn", mfa.KindRecovery, "abcdefghjkmn"},
		{"recovery upper, no dashes", "ABCDEFGHJKMN", mfa.KindRecovery, "abcdefghjkmn"},
		{"recovery look-alikes", "ILO0-abcd-efgh", mfa.KindRecovery, "1100abcdefgh"},
		{"recovery all digits", "1234-5678-9012", mfa.KindRecovery, "123456789012"},
		{"five digits", "12345", 0, ""},
		{"seven digits", "1234567", 0, ""},
		{"look-alike in a totp", "12345o", 0, ""},
		{"letter u", "uuuu-uuuu-uuuu", 0, ""},
		{"eleven", "abcd-efgh-jkm", 0, ""},
		{"thirteen", "abcd-efgh-jkmnp", 0, ""},
		{"empty", "", 0, ""},
		{"only separators", " - - ", 0, ""},
		{"unicode digits", "١٢٣٤٥٦", 0, ""},
		{"fullwidth", "１２３４５６", 0, ""},
		{"nul", "123\x00456", 0, ""},
		{"newline", "123456\n", 0, ""},
		{"too long", strings.Repeat(" ", 60) + "123456", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := mfa.ParseCode(tc.in)
			if tc.kind == 0 {
				if err == nil {
					t.Fatalf("accepted %q as kind %d", tc.in, c.Kind())
				}
				if strings.Contains(err.Error(), tc.in) && tc.in != "" {
					t.Fatal("error repeats the input")
				}
				return
			}
			if err != nil || c.Kind() != tc.kind || c.Reveal() != tc.norm {
				t.Fatalf("got %d %q %v", c.Kind(), c.Reveal(), err)
			}
		})
	}
}

func TestCodeRedacts(t *testing.T) {
	c, err := mfa.ParseCode("654321")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, "654321") {
			t.Fatalf("revealed: %s", s)
		}
	}
	if _, err := json.Marshal(c); err == nil {
		t.Fatal("marshalled a code")
	}
}

func TestNewRecoveryCodes(t *testing.T) {
	codes, err := mfa.NewRecoveryCodes(nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 14 || c[4] != '-' || c[9] != '-' {
			t.Fatalf("shape %q", c)
		}
		p, err := mfa.ParseCode(c)
		if err != nil || p.Kind() != mfa.KindRecovery || mfa.FormatRecoveryCode(p) != c {
			t.Fatalf("round trip %q: %v", c, err)
		}
		if seen[c] {
			t.Fatalf("repeated %q", c)
		}
		seen[c] = true
	}
	if _, err := mfa.NewRecoveryCodes(nil, 0); err == nil {
		t.Fatal("zero codes")
	}
	// A reader that repeats itself still yields distinct codes.
	codes, err = mfa.NewRecoveryCodes(strings.NewReader(strings.Repeat("A", 12)+strings.Repeat("B", 12)+strings.Repeat("A", 12)+strings.Repeat("C", 12)), 3)
	if err != nil || len(codes) != 3 || codes[0] == codes[1] || codes[1] == codes[2] {
		t.Fatalf("%v %v", codes, err)
	}
	if _, err := mfa.NewRecoveryCodes(strings.NewReader("short"), 1); err == nil {
		t.Fatal("short reader")
	}
}

func TestNewSecret(t *testing.T) {
	s, err := mfa.NewSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := mfa.DecodeSecretForTest(s)
	if err != nil || len(raw) != mfa.SecretBytes || s.Len() != 32 {
		t.Fatalf("secret of %d bytes (%d chars): %v", len(raw), s.Len(), err)
	}
}

// TestCodeAtRFC6238 checks the code generation against RFC 6238
// appendix B (SHA-1 rows): a 6-digit code is the 8-digit value mod 10^6.
func TestCodeAtRFC6238(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "rfc6238.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Seed  string `json:"seed_ascii"`
		Cases []struct {
			Time  int64  `json:"time"`
			Code8 string `json:"code8"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &v); err != nil || len(v.Cases) != 6 {
		t.Fatalf("vectors: %v", err)
	}
	sec := secret.New([]byte(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte(v.Seed))))
	for _, c := range v.Cases {
		t.Run(fmt.Sprint(c.Time), func(t *testing.T) {
			got, err := mfa.CodeAt(sec, time.Unix(c.Time, 0))
			if err != nil || got != c.Code8[2:] {
				t.Fatalf("got %q %v, want %q", got, err, c.Code8[2:])
			}
		})
	}
	if _, err := mfa.CodeAt(sec, time.Unix(-31, 0)); err == nil {
		t.Fatal("time before the epoch")
	}
}

func TestStep(t *testing.T) {
	for _, tc := range []struct {
		unix int64
		step int64
	}{{0, 0}, {29, 0}, {30, 1}, {59, 1}, {1111111109, 37037036}, {-1, -1}, {-30, -1}, {-31, -2}} {
		if got := mfa.Step(time.Unix(tc.unix, 0)); got != tc.step {
			t.Errorf("Step(%d) = %d, want %d", tc.unix, got, tc.step)
		}
	}
}

func TestKeyURI(t *testing.T) {
	s := secret.New([]byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
	u, err := mfa.KeyURI("keystile", "ops@host", s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"otpauth://totp/keystile:ops@host?", "secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "issuer=keystile", "algorithm=SHA1", "digits=6", "period=30"} {
		if !strings.Contains(u, want) {
			t.Errorf("%s lacks %s", u, want)
		}
	}
	if _, err := mfa.KeyURI("keystile", "x", secret.New([]byte("not base32!"))); err == nil {
		t.Fatal("bad secret accepted")
	}
}

func TestParseSessionToken(t *testing.T) {
	good := mfa.SessionPrefix + strings.Repeat("A", 42) + "Q"
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{good[:len(good)-1], false},
		{good + "A", false},
		{"kst_" + good[4:], false},
		{mfa.SessionPrefix + strings.Repeat("A", 42) + "=", false},
		{mfa.SessionPrefix + strings.Repeat("+", 43), false},
		{mfa.SessionPrefix + strings.Repeat("A", 42) + "B", false}, // non-canonical trailing bits
		{"", false},
	} {
		if _, err := mfa.ParseSessionToken(tc.in); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
}

func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"123456", "123 456", "abcd-efgh-jkmn", "ILO0ILO0ILO0", "", "１２３４５６", "12345o", strings.Repeat("-", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := mfa.ParseCode(s)
		if err != nil {
			if !c.IsZero() {
				t.Fatal("error with a code")
			}
			return
		}
		v := c.Reveal()
		switch c.Kind() {
		case mfa.KindTOTP:
			if len(v) != 6 || strings.Trim(v, "0123456789") != "" {
				t.Fatalf("totp %q", v)
			}
		case mfa.KindRecovery:
			if len(v) != 12 || strings.Trim(v, "0123456789abcdefghjkmnpqrstvwxyz") != "" {
				t.Fatalf("recovery %q", v)
			}
			again, err := mfa.ParseCode(mfa.FormatRecoveryCode(c))
			if err != nil || again.Reveal() != v {
				t.Fatalf("round trip %q: %v", v, err)
			}
		default:
			t.Fatalf("kind %d", c.Kind())
		}
		// Normalising is idempotent.
		again, err := mfa.ParseCode(v)
		if err != nil || again.Reveal() != v || again.Kind() != c.Kind() {
			t.Fatalf("normal form %q re-parsed as %q %v", v, again.Reveal(), err)
		}
	})
}

func FuzzParseSessionToken(f *testing.F) {
	f.Add(mfa.SessionPrefix + strings.Repeat("A", 42) + "Q")
	f.Add("kss_")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := mfa.ParseSessionToken(s)
		if err != nil {
			if d != [32]byte{} {
				t.Fatal("digest with an error")
			}
			return
		}
		if len(s) != 47 || !strings.HasPrefix(s, mfa.SessionPrefix) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestTerminalQR(t *testing.T) {
	const content = "otpauth://totp/keystile:ops@host?secret=JBSWY3DPEHPK3PXP&issuer=keystile"
	for _, invert := range []bool{false, true} {
		out, err := mfa.TerminalQR(content, invert)
		if err != nil {
			t.Fatal(err)
		}
		bm := mfa.QRBitmapForTest(content)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != (len(bm)+1)/2 {
			t.Fatalf("%d lines for %d rows", len(lines), len(bm))
		}
		// Read the half blocks back into modules.
		for y := range bm {
			row := []rune(lines[y/2])
			if len(row) != len(bm[y]) {
				t.Fatalf("line %d has %d cells, want %d", y/2, len(row), len(bm[y]))
			}
			for x := range bm[y] {
				var ink bool
				switch row[x] {
				case '█':
					ink = true
				case '▀':
					ink = y%2 == 0
				case '▄':
					ink = y%2 == 1
				case ' ':
				default:
					t.Fatalf("unexpected %q", row[x])
				}
				// Default: light modules are inked; inverted: dark ones.
				if dark := bm[y][x]; ink != (dark == invert) {
					t.Fatalf("invert=%v module (%d,%d) dark=%v drawn=%v", invert, x, y, dark, ink)
				}
			}
		}
		if len(bm)%2 == 1 && strings.ContainsRune(lines[len(lines)-1], '▄') {
			t.Fatal("the last half line draws below the code")
		}
	}
	if _, err := mfa.TerminalQR(strings.Repeat("x", 8000), false); err == nil {
		t.Fatal("content too long for a QR code accepted")
	}
}
