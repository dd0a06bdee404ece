package gateway

import (
	"encoding/binary"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/token"
)

// TestAuthFailureMemoryBounded: a client spraying random tokens from one
// address costs one bucket; one spraying from 200 000 addresses (IPv6
// /64s), or presenting many revoked tokens, never grows a table past its
// bound — and the limits still refuse guesses from a source that is in
// the table.
func TestAuthFailureMemoryBounded(t *testing.T) {
	const entries = 1024
	f := newAuthFailures(5, time.Second, entries)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	one := netip.MustParseAddr("127.0.0.1")
	for range 10_000 {
		f.refusal(h, one, token.ErrUnknown, now)
	}
	if g, r := f.sizes(); g != 1 || r != 0 {
		t.Fatalf("one source spraying: %d guess buckets, %d retry buckets", g, r)
	}
	if pe, rule := f.refusal(h, one, token.ErrMalformed, now); pe.Status != http.StatusTooManyRequests || rule != "token.brute_force" {
		t.Fatalf("sprayer not limited: %d %s", pe.Status, rule)
	}
	var b [16]byte
	b[0] = 0x20
	for i := range 200_000 {
		binary.BigEndian.PutUint32(b[4:8], uint32(i))
		f.refusal(h, netip.AddrFrom16(b), token.ErrUnknown, now)
		if g, _ := f.sizes(); g > entries {
			t.Fatalf("guess table at %d entries after %d sources", g, i+1)
		}
	}
	for i := range 200_000 {
		id := token.ID("tok_" + string(rune('a'+i%26)) + string(binary.BigEndian.AppendUint32(nil, uint32(i))))
		f.refusal(h, one, &token.RefusedError{ID: id, Err: token.ErrRevoked}, now)
		if _, r := f.sizes(); r > entries {
			t.Fatalf("retry table at %d entries after %d tokens", r, i+1)
		}
	}
	// Sources of one /64 share a bucket.
	g := newAuthFailures(2, time.Second, entries)
	a, c := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:1")
	g.refusal(h, a, token.ErrUnknown, now)
	g.refusal(h, c, token.ErrUnknown, now)
	if pe, _ := g.refusal(h, a, token.ErrUnknown, now); pe.Status != http.StatusTooManyRequests {
		t.Fatalf("a /64 is one source: status %d", pe.Status)
	}
}

// BenchmarkAuthFailureSpray measures one refusal of a sprayed token from
// a new source, against one from a source already in the table.
func BenchmarkAuthFailureSpray(b *testing.B) {
	now := time.Now()
	h := http.Header{}
	b.Run("same source", func(b *testing.B) {
		f := newAuthFailures(0, 0, 0)
		src := netip.MustParseAddr("127.0.0.1")
		for b.Loop() {
			f.refusal(h, src, token.ErrUnknown, now)
		}
	})
	b.Run("new sources", func(b *testing.B) {
		f := newAuthFailures(0, 0, 0)
		var a [16]byte
		a[0] = 0x20
		i := uint32(0)
		for b.Loop() {
			binary.BigEndian.PutUint32(a[4:8], i)
			i++
			f.refusal(h, netip.AddrFrom16(a), token.ErrUnknown, now)
		}
	})
}
