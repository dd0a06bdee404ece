package detect

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseAmount: ParseAmount never panics; what it accepts is a
// positive finite value with an upper-case alphanumeric currency of at
// most 16 characters, and the same text re-parses to the same result.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"60 USDT", "0.002", "1", ".5", "5.", "1e9", "-1", "0", "NaN", "Inf", "60  USDT", "60 usdt",
		"60 US DT", "1.2.3", "", " ", "60 " + strings.Repeat("X", 17), "99999999999999999999999999999999999999 BTC", "٣ USDT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, cur, ok := ParseAmount(s)
		if !ok {
			if v != 0 || cur != "" {
				t.Fatalf("refused %q but returned %v %q", s, v, cur)
			}
			return
		}
		if !(v > 0) || math.IsInf(v, 0) || len(cur) > maxCurrency || cur != strings.ToUpper(cur) {
			t.Fatalf("%q: %v %q", s, v, cur)
		}
		again := strconv.FormatFloat(v, 'f', -1, 64)
		if cur != "" {
			again += " " + cur
		}
		v2, cur2, ok2 := ParseAmount(again)
		if !ok2 || v2 != v || cur2 != cur {
			t.Fatalf("%q -> %v %q -> %q -> %v %q %v", s, v, cur, again, v2, cur2, ok2)
		}
	})
}

// FuzzDecodeProfile: a stored profile is untrusted bytes. decodeProfile
// never panics, and what it accepts respects every bound, re-encodes, and
// decodes again to the same bytes; the detector can then learn on it.
func FuzzDecodeProfile(f *testing.F) {
	p := newProfile("token:tok_a", time.Unix(1_700_000_000, 0).UTC())
	for i := range 40 {
		at := time.Unix(1_700_000_000+int64(i)*60, 0)
		p.Rate.add(1, at, time.Minute, 5, "r")
		p.Hours.learn(at, time.UTC)
	}
	p.Size["n:USDT"] = &logStat{}
	p.Size["n:USDT"].learn(60, time.Unix(1_700_000_000, 0), 3)
	p.Instruments["binance/BTCUSDT"] = 3
	p.Sources["abc"] = 1_700_000_000
	good, err := p.encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, s := range []string{"", "{}", "null", `{"key":"admin"}`, `{"key":"token:x","size":{"n:X":null}}`,
		`{"key":"token:x","rate":{"stat":{"mean":1e308,"var":-1}}}`, `{"key":"token:x","requests":-5}`,
		`{"key":"token:x","sources":{"":1}}`, `{"key":"token:x","size":{"k":{"warm":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33]}}}`,
		`{"key":"token:\u0000"}`, `[1,2]`, `{"key":"token:x","hours":{"hours":[1]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeProfile(b)
		if err != nil {
			return
		}
		if err := p.check(); err != nil {
			t.Fatalf("accepted a profile that fails its check: %v", err)
		}
		enc, err := p.encode()
		if err != nil {
			t.Fatalf("accepted profile does not re-encode: %v", err)
		}
		p2, err := decodeProfile(enc)
		if err != nil {
			t.Fatalf("re-encoded profile refused: %v", err)
		}
		enc2, _ := p2.encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable:\n%s\n%s", enc, enc2)
		}
		// Learning on it must not panic or break the bounds.
		at := time.Unix(1_800_000_000, 0)
		p2.Rate.add(1, at, time.Minute, 5, "r")
		for _, s := range p2.Size {
			s.learn(10, at, 3)
		}
		p2.Hours.learn(at, time.UTC)
		bump(p2.Instruments, "x/y", maxInstruments)
		if err := p2.check(); err != nil {
			t.Fatalf("learning broke a bound: %v", err)
		}
	})
}
