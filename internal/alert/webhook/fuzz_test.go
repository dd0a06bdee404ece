package webhook

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseSignature: ParseSignature never panics; what it accepts
// formats back to a header it parses identically (round trip); what it
// refuses is ErrMalformed; Verify agrees with a direct check.
func FuzzParseSignature(f *testing.F) {
	key := []byte("fuzz-key-0123456789")
	body := []byte(`{"a":1}`)
	for _, s := range []string{
		SignatureHeader(1767323045, Sign(key, 1767323045, body)),
		"t=1,v1=" + strings.Repeat("ab", 32) + ",v1=" + strings.Repeat("cd", 32),
		"t=1767323045,v0=zz,v1=" + strings.Repeat("00", 32),
		"", "t=", "=", ",,", "t=1,t=2", "v1=00", "t=-1,v1=" + strings.Repeat("0", 64),
		"t=01,v1=" + strings.Repeat("0", 64), "t=9223372036854775808,v1=" + strings.Repeat("0", 64),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		s, err := ParseSignature(h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			if Verify(key, h, body, time.Now(), 0) == nil {
				t.Fatal("Verify accepted a header ParseSignature refuses")
			}
			return
		}
		if s.Timestamp <= 0 || len(s.V1) == 0 || len(s.V1) > maxSignatures {
			t.Fatalf("accepted %+v", s)
		}
		again, err := ParseSignature(s.String())
		if err != nil || again.Timestamp != s.Timestamp || len(again.V1) != len(s.V1) {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", s, s.String(), again, err)
		}
		for i := range s.V1 {
			if !bytes.Equal(again.V1[i], s.V1[i]) {
				t.Fatal("round trip changed a signature")
			}
		}
		want := Sign(key, s.Timestamp, body)
		match := false
		for _, v := range s.V1 {
			match = match || bytes.Equal(v, want)
		}
		err = Verify(key, h, body, time.Unix(s.Timestamp, 0), time.Second)
		if match != (err == nil) {
			t.Fatalf("Verify = %v, direct match %v", err, match)
		}
	})
}
