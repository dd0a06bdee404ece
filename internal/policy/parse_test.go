package policy

import (
	"testing"
	"time"
)

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"250 USDT", "250 USDT", true},
		{"  0.5   btc ", "0.5 BTC", true},
		{"1 XBT", "1 BTC", true},
		{"250", "", false},
		{"USDT 250", "", false},
		{"-5 USDT", "", false},
		{"0 USDT", "", false},
		{"1e3 USDT", "", false},
		{"1.5.2 USDT", "", false},
		{".5 USDT", "", false},
		{"5. USDT", "", false},
		{"5 U$", "", false},
		{"5 USDT extra", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			a, err := ParseAmount(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && a.String() != tc.want {
				t.Errorf("got %q, want %q", a, tc.want)
			}
		})
	}
}

func TestQuoteCurrency(t *testing.T) {
	for in, want := range map[string]string{
		"BTCUSDT": "USDT", "btcusdt": "USDT", "BTCFDUSD": "FDUSD", "ETHBTC": "BTC", "XBTUSD": "USD",
		"XXBTZUSD": "USD", "BTC-USDT": "USDT", "BTC/USD": "USD", "BTC_USDC": "USDC", "BTC-USDT-SWAP": "USDT",
		"ETH/XBT": "BTC", "BTCEUR": "EUR", "BTCTUSD": "TUSD", "OPUSDT": "USDT", "ARBUSD": "USD", "FOOBAR": "", "USDT": "", "-USDT": "", "BTC-": "", "BTC-U$": "",
	} {
		got, ok := QuoteCurrency(in)
		if got != want || ok != (want != "") {
			t.Errorf("QuoteCurrency(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestParseBandAndRate(t *testing.T) {
	if b, err := parseBand("5%"); err != nil || b.String() != "0.05" {
		t.Errorf("5%% = %v, %v", b, err)
	}
	for _, bad := range []string{"5", "0%", "101%", "-1%", "x%", "%"} {
		if _, err := parseBand(bad); err == nil {
			t.Errorf("parseBand(%q) accepted", bad)
		}
	}
	for in, want := range map[string]float64{"10/s": 10, "60/m": 1, "3600/h": 1} {
		r, err := parseRate(in)
		if err != nil || float64(r.perSec) != want {
			t.Errorf("parseRate(%q) = %v, %v", in, r.perSec, err)
		}
	}
	for _, bad := range []string{"10", "0/s", "-1/s", "1/d", "x/s", "1.5/s", "/s", "2000000/s"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("parseRate(%q) accepted", bad)
		}
	}
}

func TestWindows(t *testing.T) {
	// 2025-01-06 is a Monday.
	at := func(day, hh, mm int) time.Time { return time.Date(2025, 1, 5+day, hh, mm, 0, 0, time.UTC) } // day 0 = Sunday
	for _, tc := range []struct {
		spec string
		t    time.Time
		want bool
	}{
		{"Mon-Fri 08:00-20:00", at(1, 8, 0), true},
		{"Mon-Fri 08:00-20:00", at(1, 7, 59), false},
		{"Mon-Fri 08:00-20:00", at(1, 20, 0), false},
		{"Mon-Fri 08:00-20:00", at(6, 12, 0), false},
		{"Sat 10:00-12:00", at(6, 11, 0), true},
		{"Fri 22:00-02:00", at(5, 23, 0), true},
		{"Fri 22:00-02:00", at(6, 1, 59), true},
		{"Fri 22:00-02:00", at(6, 2, 0), false},
		{"Fri 22:00-02:00", at(5, 1, 0), false}, // Friday morning: window started Thursday? no
		{"Fri-Mon 00:00-24:00", at(0, 12, 0), true},
		{"Fri-Mon 00:00-24:00", at(2, 12, 0), false},
		{"Mon,Wed 09:00-10:00", at(3, 9, 30), true},
		{"Mon,Wed 09:00-10:00", at(2, 9, 30), false},
		{"12:00-13:00", at(4, 12, 30), true},
		{"Sun 23:00-01:00", at(1, 0, 30), true}, // wraps Sunday -> Monday
	} {
		w, err := parseWindow(tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		if got := w.contains(tc.t); got != tc.want {
			t.Errorf("%q at %s = %v, want %v", tc.spec, tc.t.Format("Mon 15:04"), got, tc.want)
		}
	}
	for _, bad := range []string{"", "Mon", "Mon-Fri 8:00-20:00", "Xyz 08:00-09:00", "08:00-08:00", "24:00-01:00",
		"Mon 08:00", "Mon 08:60-09:00", "a b c", "Mon +8:00-09:00", "Mon 08:00-25:00"} {
		if _, err := parseWindow(bad); err == nil {
			t.Errorf("parseWindow(%q) accepted", bad)
		}
	}
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{"250 USDT", "5%", "10/s", "Mon-Fri 08:00-20:00", "Fri 22:00-02:00", "0.5", "BTC-USDT", "1e9 X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := ParseAmount(s); err == nil {
			// Round trip: the formatted amount parses to the same amount.
			b, err := ParseAmount(a.String())
			if err != nil || !b.Value.Equal(a.Value) || b.Currency != a.Currency {
				t.Fatalf("round trip of %q: %v -> %v, %v", s, a, b, err)
			}
			if !a.Value.IsPositive() {
				t.Fatalf("%q: non-positive amount accepted", s)
			}
		}
		if d, err := parsePlain(s); err == nil && d.IsNegative() {
			t.Fatalf("%q: negative plain decimal", s)
		}
		_, _ = parseBand(s)
		_, _ = parseRate(s)
		if w, err := parseWindow(s); err == nil {
			if w.days == 0 || w.start == w.end || w.start < 0 || w.start >= 24*60 || w.end <= 0 || w.end > 24*60 {
				t.Fatalf("%q: bad window %+v", s, w)
			}
			_ = w.contains(time.Now())
		}
		_, _ = QuoteCurrency(s)
	})
}
