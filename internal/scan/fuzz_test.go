package scan_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/keystile/keystile/internal/scan"
)

func isSpace(c byte) bool { return c <= ' ' || c == 0x7f }

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// FuzzCandidates: every candidate is in range, of a wanted length, free of
// whitespace and aligned on token boundaries; and a value standing alone
// between spaces is always a candidate.
func FuzzCandidates(f *testing.F) {
	f.Add([]byte(`KEY="abc+/=="; x=1`), []byte("abcdefgh"))
	f.Add([]byte("u?t=abcdefgh&x=1\t\x00\xff"), []byte("a.b-c_d"))
	f.Add([]byte(""), []byte("kst_live_0"))
	f.Fuzz(func(t *testing.T, line, val []byte) {
		val = bytes.Map(func(r rune) rune {
			if r <= ' ' || r == 0x7f || r >= 0x80 {
				return 'x'
			}
			return r
		}, val)
		if len(val) == 0 || len(val) > 64 || len(line) > 4096 {
			return
		}
		wanted := make([]bool, len(val)+1)
		wanted[len(val)] = true
		full := append(append(append(append([]byte{}, line...), ' '), val...), ' ')
		full = append(full, line...)
		found := false
		scan.Candidates(full, wanted, func(a, e int) {
			if a < 0 || e > len(full) || a >= e || !wanted[e-a] {
				t.Fatalf("bad span [%d,%d) of %d", a, e, len(full))
			}
			for _, c := range full[a:e] {
				if isSpace(c) {
					t.Fatalf("span [%d,%d) holds whitespace", a, e)
				}
			}
			if a > 0 && !isSpace(full[a-1]) && isAlnum(full[a-1]) && isAlnum(full[a]) {
				t.Fatalf("span starts inside a word at %d", a)
			}
			if e < len(full) && !isSpace(full[e]) && isAlnum(full[e-1]) && isAlnum(full[e]) {
				t.Fatalf("span ends inside a word at %d", e)
			}
			if a == len(line)+1 && e == a+len(val) {
				found = true
			}
		})
		if !found {
			t.Fatalf("value %q between spaces not a candidate", val)
		}
	})
}

// FuzzParseBaseline: no panic on any input; when accepted, every
// fingerprint in the input is known and nothing else is.
func FuzzParseBaseline(f *testing.F) {
	f.Add([]byte(`{"version":1,"findings":[{"file":"a","line":1,"fingerprint":"00ff"}]}`))
	f.Add([]byte(`{"version":1,"findings":[]}`))
	f.Add([]byte(`{"version":1,"findings":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"version":1,"findings":[{"fingerprint":""}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := scan.ParseBaseline(bytes.NewReader(data))
		if err != nil {
			return
		}
		var in struct {
			Findings []struct {
				Fingerprint string `json:"fingerprint"`
			} `json:"findings"`
		}
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("accepted input that is not JSON: %v", err)
		}
		distinct := map[string]bool{}
		for _, x := range in.Findings {
			distinct[x.Fingerprint] = true
			if !b.Contains(x.Fingerprint) {
				t.Fatalf("fingerprint %q lost", x.Fingerprint)
			}
		}
		if b.Len() != len(distinct) {
			t.Fatalf("Len %d, want %d", b.Len(), len(distinct))
		}
		// Round trip through a report.
		rep := &scan.Report{Version: scan.ReportVersion}
		for fp := range distinct {
			rep.Findings = append(rep.Findings, scan.Finding{File: "f", Line: 1, Fingerprint: fp})
		}
		var buf bytes.Buffer
		if err := scan.WriteJSON(&buf, rep); err != nil {
			t.Fatal(err)
		}
		b2, err := scan.ParseBaseline(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if b2.Len() != b.Len() {
			t.Fatalf("round trip: %d, want %d", b2.Len(), b.Len())
		}
	})
}
