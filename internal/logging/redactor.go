package logging

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keystile/keystile/internal/secret"
)

// MinSecretLen is the shortest value Register accepts. Shorter values are
// ignored: redacting every 4-byte string that happens to equal a short
// secret would garble logs and, worse, reveal the secret by its absence.
const MinSecretLen = 8

// redacted replaces a registered value.
const redacted = secret.Redacted

// maxPasses bounds re-scrubbing when a replacement creates a new match.
const maxPasses = 8

// Redactor holds the secret values to scrub from logs and responses. The
// zero Redactor is not usable; call NewRedactor. All methods are safe for
// concurrent use; Scrub is lock-free.
type Redactor struct {
	mu     sync.Mutex
	values map[string]int // raw value -> registration count
	cur    atomic.Pointer[matcher]
	gen    atomic.Uint64
}

// NewRedactor returns an empty Redactor.
func NewRedactor() *Redactor {
	r := &Redactor{values: map[string]int{}}
	r.cur.Store(&matcher{})
	return r
}

// Register adds v (and its encodings) to the values scrubbed. Values
// shorter than MinSecretLen bytes, and the literal "REDACTED", are
// ignored. Registering the same value twice needs two Unregister calls.
// The Redactor keeps its own copy of the bytes.
func (r *Redactor) Register(v secret.Value) {
	if v.Len() < MinSecretLen || string(v.Reveal()) == redacted {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values[string(v.Reveal())]++
	r.rebuild()
}

// Unregister removes one registration of v.
func (r *Redactor) Unregister(v secret.Value) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := string(v.Reveal())
	n, ok := r.values[k]
	if !ok {
		return
	}
	if n > 1 {
		r.values[k] = n - 1
		return
	}
	delete(r.values, k)
	r.rebuild()
}

// Len reports how many distinct values are registered.
func (r *Redactor) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.values)
}

// generation changes whenever the registered set changes.
func (r *Redactor) generation() uint64 {
	if r == nil {
		return 0
	}
	return r.gen.Load()
}

func (r *Redactor) rebuild() {
	m := &matcher{byPrefix: map[uint16][]pattern{}}
	seen := map[string]bool{}
	addPattern := func(p pattern) {
		if len(p.p) < 2 || seen[p.p] {
			return
		}
		seen[p.p] = true
		k := prefixKey(p.p[0], p.p[1])
		m.bloom[k>>6] |= 1 << (k & 63)
		m.byPrefix[k] = append(m.byPrefix[k], p)
	}
	for v := range r.values {
		for _, e := range encodings([]byte(v)) {
			addPattern(pattern{p: asciiLower(e)})
		}
		// Fragments of the raw value: a venue or a library echoing a
		// truncated secret still leaks most of it.
		if f := FragmentLen(len(v)); f < len(v) {
			src := asciiLower(v)
			for j := 0; j+f <= len(src); j++ {
				addPattern(pattern{p: src[j : j+f], src: src, off: j})
			}
		}
	}
	// Longest first, so that "padded base64" wins over its raw prefix.
	for k, ps := range m.byPrefix {
		sortByLenDesc(ps)
		m.byPrefix[k] = ps
	}
	m.any = len(seen) > 0
	r.cur.Store(m)
	r.gen.Add(1)
}

// Fragment thresholds: a registered value of at least FragmentMinSecret
// bytes is also scrubbed where a run of FragmentLen(len) of its bytes
// appears (half the value, at most MaxFragment bytes). A 16-byte run of a
// random secret does not occur by chance; shorter secrets are matched
// whole only, their fragments being short enough to collide with text.
const (
	FragmentMinSecret = 24
	MaxFragment       = 16
)

// FragmentLen is the shortest run of a secret of n bytes that is scrubbed
// (n itself for secrets shorter than FragmentMinSecret).
func FragmentLen(n int) int {
	if n < FragmentMinSecret {
		return n
	}
	return min(MaxFragment, (n+1)/2)
}

func sortByLenDesc(ps []pattern) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && len(ps[j].p) > len(ps[j-1].p); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// encodings returns the forms of v that are scrubbed.
func encodings(v []byte) []string {
	h := hex.EncodeToString(v)
	return []string{
		string(v),
		h,
		base64.StdEncoding.EncodeToString(v),
		base64.RawStdEncoding.EncodeToString(v),
		base64.URLEncoding.EncodeToString(v),
		base64.RawURLEncoding.EncodeToString(v),
		url.QueryEscape(string(v)),
		url.PathEscape(string(v)),
	}
}

// pattern is one lower-cased form to find. A fragment (src != "") is the
// run src[off:off+len(p)] of a raw value; a match extends as far as the
// text keeps following src.
type pattern struct {
	p   string
	src string
	off int
}

// matcher is an immutable snapshot of the patterns. Matching ignores ASCII
// case (an echo may upper-case a hex key). A bitmap of case-folded 2-byte
// prefixes makes the common no-match case one table probe per byte.
type matcher struct {
	any      bool
	bloom    [1024]uint64
	byPrefix map[uint16][]pattern
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

// asciiLower folds ASCII upper case only. strings.ToLower would turn each
// invalid UTF-8 byte of a binary secret into U+FFFD, and the pattern would
// then never match the raw bytes it stands for.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}

func prefixKey(a, b byte) uint16 { return uint16(lower(a))<<8 | uint16(lower(b)) }

// hasFoldPrefix reports whether s starts with the lower-case p, ignoring
// ASCII case.
func hasFoldPrefix(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lower(s[i]) != p[i] {
			return false
		}
	}
	return true
}

// find returns the index and length of the first (longest at that index)
// match in s, or -1.
func (m *matcher) find(s string) (int, int) {
	if !m.any {
		return -1, 0
	}
	for i := 0; i+1 < len(s); i++ {
		k := prefixKey(s[i], s[i+1])
		if m.bloom[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		best := 0
		for _, p := range m.byPrefix[k] {
			if len(p.p) <= best && p.src == "" || !hasFoldPrefix(s[i:], p.p) {
				continue
			}
			n := len(p.p)
			for p.src != "" && p.off+n < len(p.src) && i+n < len(s) && lower(s[i+n]) == p.src[p.off+n] {
				n++
			}
			best = max(best, n)
		}
		if best > 0 {
			return i, best
		}
	}
	return -1, 0
}

// ScrubString returns s with every registered value (in any of its
// encodings) replaced by REDACTED and every keystile client token
// replaced by kst_live_REDACTED / kst_test_REDACTED. It returns s itself,
// without allocating, when nothing matches. A nil Redactor still scrubs
// client tokens.
func (r *Redactor) ScrubString(s string) string {
	var m *matcher
	if r != nil {
		m = r.cur.Load()
	} else {
		m = &matcher{}
	}
	for pass := 0; pass < maxPasses; pass++ {
		out, changed := scrubOnce(m, s)
		if !changed {
			return out
		}
		s = out
	}
	if i, _ := m.find(s); i >= 0 {
		// Replacements keep forming new matches: fail closed.
		return redacted
	}
	return s
}

// Scrub is ScrubString for bytes. It returns b itself when nothing
// matches, and a new slice otherwise; b is never modified.
func (r *Redactor) Scrub(b []byte) []byte {
	s := r.ScrubString(string(b))
	if len(s) == len(b) && s == string(b) {
		return b
	}
	return []byte(s)
}

func scrubOnce(m *matcher, s string) (string, bool) {
	i, n := m.find(s)
	t := tokenIndex(s)
	if i < 0 && t < 0 {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 || t >= 0 {
		if t >= 0 && (i < 0 || t <= i) {
			end := t + tokenLen(s[t:])
			b.WriteString(s[:t])
			b.WriteString(s[t : t+len("kst_live_")])
			b.WriteString(redacted)
			s = s[end:]
		} else {
			b.WriteString(s[:i])
			b.WriteString(redacted)
			s = s[i+n:]
		}
		i, n = m.find(s)
		t = tokenIndex(s)
	}
	b.WriteString(s)
	return b.String(), true
}

// tokenIndex finds the first kst_(live|test)_ followed by 43+ base62
// characters.
func tokenIndex(s string) int {
	off := 0
	for {
		i := strings.Index(s[off:], "kst_")
		if i < 0 {
			return -1
		}
		i += off
		if tokenLen(s[i:]) > 0 {
			return i
		}
		off = i + 4
	}
}

// tokenLen returns the length of the client token at the start of s, or 0.
func tokenLen(s string) int {
	if !strings.HasPrefix(s, "kst_live_") && !strings.HasPrefix(s, "kst_test_") {
		return 0
	}
	n := len("kst_live_")
	j := n
	for j < len(s) && isBase62(s[j]) {
		j++
	}
	if j-n < 43 {
		return 0
	}
	return j
}

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
