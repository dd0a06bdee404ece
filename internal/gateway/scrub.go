package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/venue"
)

// Answer scrubbing.
//
// Two sets of secrets are removed from every answer before the bot sees
// it: the values registered with Options.Scrubber (the vault's credential
// fields, through logging.Redactor) and the secret header values the
// signer sent on this request (reqState.sent: API keys, signatures,
// passphrases, session tokens — never the headers a venue declares public
// with venue.PublicHeaders, such as timestamps and nonces, which venues
// echo as data).
//
// Sent values are matched case-insensitively (a venue may echo a hex
// signature upper-cased) and by long fragment: a value of at least
// fragmentMinSecret bytes is also found when a run of at least
// fragmentLen(n) of its bytes is echoed (a truncated prefix or suffix).
//
// JSON answers stay JSON: strings are decoded first (so \u0061- and
// \/-escaped echoes are found) and a scrubbed string is written back as a
// JSON string; a scrubbed number or literal becomes the string
// "REDACTED". Other answers and headers get a plain replacement.

// placeholder replaces a secret.
const placeholder = "REDACTED"

// Fragment thresholds: a sent value shorter than fragmentMinSecret is
// matched only whole (at least minSentLen bytes); a longer one also by any
// run of fragmentLen(n) bytes, which is half the value up to 16 bytes. A
// 16-byte run of a random secret does not occur by chance, and a secret
// shorter than 24 bytes has no fragment long enough not to.
const (
	minSentLen        = 8
	fragmentMinSecret = 24
	maxFragment       = 16
	maxScrubPasses    = 8
)

func fragmentLen(n int) int {
	if n < fragmentMinSecret {
		return n
	}
	return min(maxFragment, (n+1)/2)
}

// foldTable maps a byte to its ASCII lower case.
var foldTable = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

func lower(c byte) byte { return foldTable[c] }

func toLower(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return b
}

// gram folds the 4 bytes at b[0:4] into one word (see gramKey).
func gram(b []byte) uint32 {
	_ = b[3]
	return uint32(lower(b[0])) | uint32(lower(b[1]))<<8 | uint32(lower(b[2]))<<16 | uint32(lower(b[3]))<<24
}

// gramKey is the 12-bit key of the sentMatcher's filter for a gram.
func gramKey(x uint32) uint32 { return (x * 2654435761) >> 20 }

// sentMatcher finds the secret values one request sent. needles are
// lower-cased, at least minSentLen bytes; filter has a bit for every
// 4-byte run a match can start with. The zero sentMatcher matches
// nothing.
type sentMatcher struct {
	needles [][]byte
	filter  [64]uint64
}

func newSentMatcher(needles [][]byte) sentMatcher {
	m := sentMatcher{needles: needles}
	for _, n := range needles {
		for j := 0; j+fragmentLen(len(n)) <= len(n); j++ {
			k := gramKey(gram(n[j:]))
			m.filter[k>>6] |= 1 << (k & 63)
		}
	}
	return m
}

// find returns the start and length of the leftmost (then longest) match
// in b, or -1.
func (m *sentMatcher) find(b []byte) (int, int) {
	if len(m.needles) == 0 {
		return -1, 0
	}
	if len(b) < minSentLen {
		return -1, 0
	}
	x := uint32(lower(b[0]))<<8 | uint32(lower(b[1]))<<16 | uint32(lower(b[2]))<<24
	for i := 0; i+minSentLen <= len(b); i++ {
		// Rolling: x holds the folded b[i:i+4].
		x = x>>8 | uint32(lower(b[i+3]))<<24
		k := gramKey(x)
		if m.filter[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		best := 0
		for _, n := range m.needles {
			f := fragmentLen(len(n))
			if len(b)-i < f {
				continue
			}
			for j := 0; j+f <= len(n); j++ {
				if n[j] != lower(b[i]) || !foldPrefix(b[i:], n[j:j+f]) {
					continue
				}
				l := f
				for j+l < len(n) && i+l < len(b) && lower(b[i+l]) == n[j+l] {
					l++
				}
				best = max(best, l)
			}
		}
		if best > 0 {
			return i, best
		}
	}
	return -1, 0
}

// foldPrefix reports whether b starts with the lower-case p, ignoring
// ASCII case.
func foldPrefix(b, p []byte) bool {
	if len(b) < len(p) {
		return false
	}
	for i, c := range p {
		if lower(b[i]) != c {
			return false
		}
	}
	return true
}

// replace returns b with every match replaced by the placeholder, or b
// itself when nothing matches. Replacements that form new matches are
// scrubbed again; past maxScrubPasses the whole value is the placeholder.
func (m *sentMatcher) replace(b []byte) []byte {
	for pass := 0; pass < maxScrubPasses; pass++ {
		i, n := m.find(b)
		if i < 0 {
			return b
		}
		out := make([]byte, 0, len(b))
		for i >= 0 {
			out = append(out, b[:i]...)
			out = append(out, placeholder...)
			b = b[i+n:]
			i, n = m.find(b)
		}
		b = append(out, b...)
	}
	if i, _ := m.find(b); i >= 0 {
		return []byte(placeholder)
	}
	return b
}

// scrubber scrubs one answer: the registered values and this request's
// sent secrets.
type scrubber struct {
	reg  Scrubber // may be nil
	sent sentMatcher
}

func (g *Gateway) scrubberFor(sent [][]byte) scrubber {
	return scrubber{reg: g.o.Scrubber, sent: newSentMatcher(sent)}
}

// plain replaces secrets in b without regard to its syntax. It returns b
// itself when nothing matches.
func (s *scrubber) plain(b []byte) []byte {
	out := b
	if s.reg != nil {
		out = s.reg.Scrub(out)
	}
	return s.sent.replace(out)
}

// same reports whether a is b (the same bytes in memory, or both empty).
func same(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// header scrubs the answer's header values in place.
func (s *scrubber) header(h http.Header) {
	for k, vs := range h {
		for i, v := range vs {
			if nv := s.plain([]byte(v)); !bytes.Equal(nv, []byte(v)) {
				h[k][i] = string(nv)
			}
		}
	}
}

// body scrubs an answer body. A JSON body (by content type, or starting
// with { or [) that is valid stays valid JSON. It returns data itself when
// nothing matches.
func (s *scrubber) body(data []byte, contentType string) []byte {
	plain := s.plain(data)
	rawHit := !same(plain, data)
	isJSON := looksJSON(data, contentType)
	if !rawHit && (!isJSON || bytes.IndexByte(data, '\\') < 0) {
		return data
	}
	if !isJSON || !json.Valid(data) {
		return plain
	}
	return s.json(data, rawHit)
}

func looksJSON(data []byte, contentType string) bool {
	if strings.Contains(strings.ToLower(contentType), "json") {
		return true
	}
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// json scrubs a valid JSON document token by token. With rawHit false only
// strings holding escapes can hide a match (the raw bytes held none).
func (s *scrubber) json(data []byte, rawHit bool) []byte {
	var out []byte
	last := 0
	emit := func(start, end int, repl []byte) {
		if out == nil {
			out = make([]byte, 0, len(data))
		}
		out = append(out, data[last:start]...)
		out = append(out, repl...)
		last = end
	}
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '"':
			end, escaped := stringEnd(data, i)
			if !rawHit && !escaped {
				i = end
				continue
			}
			raw := data[i+1 : end-1]
			content := raw
			if escaped {
				var str string
				if json.Unmarshal(data[i:end], &str) != nil {
					// Not reached for a valid document; fail closed.
					emit(i, end, []byte(`"`+placeholder+`"`))
					i = end
					continue
				}
				content = []byte(str)
			}
			sc := s.plain(content)
			// An escape's hex digits next to the text can spell a
			// fragment the decoded string does not hold (`\u7d9f` +
			// "1a3c…"): the string is then re-encoded without them.
			rawOnly := escaped && rawHit && !same(s.plain(raw), raw)
			if !same(sc, content) || rawOnly {
				enc := appendJSONString(nil, sc)
				if e := s.plain(enc); !same(e, enc) {
					// The re-encoding's own escapes spell one: fail
					// closed.
					enc = []byte(`"` + placeholder + `"`)
				}
				emit(i, end, enc)
			}
			i = end
		case strings.IndexByte("{}[],: \t\r\n", c) >= 0:
			i++
		default:
			// A number or a literal: up to the next delimiter.
			end := i + 1
			for end < len(data) && strings.IndexByte("{}[],: \t\r\n\"", data[end]) < 0 {
				end++
			}
			if rawHit {
				tok := data[i:end]
				if sc := s.plain(tok); !same(sc, tok) {
					emit(i, end, []byte(`"`+placeholder+`"`))
				}
			}
			i = end
		}
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}

// stringEnd returns the index just past the string starting at data[i]
// (a quote) and whether it holds escapes.
func stringEnd(data []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return len(data), escaped
}

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes
// U+FFFD, so the result is valid for strict parsers too).
func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&15])
		default:
			b = append(b, s[:size]...)
		}
		s = s[size:]
	}
	return append(b, '"')
}

// secretHeaders are the request headers whose values, as the signer sent
// them, are scrubbed from answers: Authorization, Cookie and the venue's
// credential headers except those it declares public (venue.PublicHeaders).
func secretHeaders(impl venue.Venue, credHdrs []string) []string {
	public := map[string]bool{}
	if p, ok := impl.(venue.PublicHeaders); ok {
		for _, h := range p.PublicHeaders() {
			public[http.CanonicalHeaderKey(h)] = true
		}
	}
	out := []string{"Authorization", "Cookie"}
	for _, h := range credHdrs {
		if !public[h] && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// addSent remembers a secret header value for scrubbing, lower-cased: the
// whole value and, for "Scheme token" values (Authorization, DMarket's
// "dmar ed25519 <hex>"), the parts after the first and the last space.
// Values shorter than minSentLen, repeats and the placeholder itself are
// skipped.
func (st *reqState) addSent(v string) {
	add := func(s string) {
		s = strings.TrimSpace(s)
		if len(s) < minSentLen || strings.EqualFold(s, placeholder) {
			return
		}
		b := toLower(s)
		for _, have := range st.sent {
			if bytes.Equal(have, b) {
				return
			}
		}
		st.sent = append(st.sent, b)
	}
	add(v)
	if i := strings.IndexByte(v, ' '); i >= 0 {
		add(v[i+1:])
		add(v[strings.LastIndexByte(v, ' ')+1:])
	}
}
