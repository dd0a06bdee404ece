package runexec

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// Mask replaces a masked value in the child's output.
const Mask = "[" + secret.Redacted + "]"

// MinMaskLen is the shortest value the Masker masks. Shorter values would
// garble ordinary output, and their absence would reveal them.
const MinMaskLen = 8

// partialMaskLen is the shortest held tail that is masked, not printed,
// when it is released on idle or close.
const partialMaskLen = 4

// DefaultIdle is how long a held tail waits for the next write.
const DefaultIdle = 100 * time.Millisecond

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("runexec: masker closed")

// Encodings returns the forms of v that are masked: raw, hex (lower and
// upper), base64 (standard and URL, padded and raw), and URL escapes.
func Encodings(v []byte) []string {
	h := hex.EncodeToString(v)
	out := []string{
		string(v), h, strings.ToUpper(h),
		base64.StdEncoding.EncodeToString(v), base64.RawStdEncoding.EncodeToString(v),
		base64.URLEncoding.EncodeToString(v), base64.RawURLEncoding.EncodeToString(v),
		url.QueryEscape(string(v)), url.PathEscape(string(v)),
	}
	seen := map[string]bool{}
	uniq := out[:0]
	for _, s := range out {
		if !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	return uniq
}

// Masker is an io.WriteCloser that masks values in a stream before
// passing it on. It is safe for concurrent use.
type Masker struct {
	mu     sync.Mutex
	w      io.Writer
	pats   []string // longest first
	first  [256]bool
	maxLen int
	held   []byte
	// ctx is a possible start of a value that an idle flush already
	// released (raw if short, else as the mask: ctxMasked): later bytes
	// that continue it are still part of that value and are masked, so a
	// value written slowly, byte by byte, leaks at most partialMaskLen-1
	// bytes. held then holds the bytes after ctx.
	ctx       []byte
	ctxMasked bool
	idle      time.Duration
	timer     *time.Timer
	closed    bool
	lastErr   error
}

// NewMasker returns a Masker writing to w that masks values (those shorter
// than MinMaskLen are ignored; see Skipped). idle bounds how long a
// possible start of a value is held back; if 0, DefaultIdle.
func NewMasker(w io.Writer, values []secret.Value, idle time.Duration) *Masker {
	if idle <= 0 {
		idle = DefaultIdle
	}
	m := &Masker{w: w, idle: idle}
	seen := map[string]bool{}
	for _, v := range values {
		if v.Len() < MinMaskLen {
			continue
		}
		for _, p := range Encodings(v.Reveal()) {
			if !seen[p] {
				seen[p] = true
				m.pats = append(m.pats, p)
				m.first[p[0]] = true
				m.maxLen = max(m.maxLen, len(p))
			}
		}
	}
	sort.SliceStable(m.pats, func(i, j int) bool { return len(m.pats[i]) > len(m.pats[j]) })
	return m
}

// Skipped returns the indexes of values too short to be masked.
func Skipped(values []secret.Value) []int {
	var out []int
	for i, v := range values {
		if v.Len() < MinMaskLen {
			out = append(out, i)
		}
	}
	return out
}

// Write masks p (together with any held tail) and writes what can be
// released. It reports len(p) on success, as the bytes are consumed.
func (m *Masker) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(p) // p is re-sliced below; every byte of it is consumed
	if m.closed {
		return 0, ErrClosed
	}
	if m.lastErr != nil {
		return 0, m.lastErr
	}
	var out []byte
	if len(m.ctx) > 0 {
		var rest []byte
		var more bool
		out, rest, more = m.continueCtx(p)
		if more {
			p = nil
		} else {
			p = rest
		}
	}
	if p != nil {
		data := append(m.held, p...)
		o, held := m.scan(data)
		out = append(out, o...)
		m.held = append([]byte(nil), held...)
		secret.Wipe(data)
	}
	if len(out) > 0 {
		if _, err := m.w.Write(out); err != nil {
			m.lastErr = err
			return 0, err
		}
	}
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	if len(m.held) > 0 {
		m.timer = time.AfterFunc(m.idle, func() { _ = m.Flush() })
	}
	return n, nil
}

// continueCtx feeds p after a released possible start of a value (ctx,
// then the held bytes). While ctx+held+p is still a possible start, it is
// held (more=true); once it completes a value, the value's remainder is
// masked; once it cannot, ctx is forgotten and the bytes after it are
// returned (rest) to be scanned normally.
func (m *Masker) continueCtx(p []byte) (out, rest []byte, more bool) {
	cand := make([]byte, 0, len(m.ctx)+len(m.held)+len(p))
	cand = append(append(append(cand, m.ctx...), m.held...), p...)
	defer secret.Wipe(cand)
	nctx := len(m.ctx)
	if n := m.fullMatch(cand); n > nctx {
		if !m.ctxMasked {
			out = []byte(Mask)
		}
		m.endCtx()
		return out, append([]byte(nil), cand[n:]...), false
	}
	if len(cand) < m.maxLen && m.partialMatch(cand) {
		secret.Wipe(m.held)
		m.held = append([]byte(nil), cand[nctx:]...)
		return nil, nil, true
	}
	// Not a value after all: what ctx released stays released; the
	// rest is ordinary output (or the start of another value).
	rest = append([]byte(nil), cand[nctx:]...)
	if m.ctxMasked {
		// The held bytes were already covered by the mask.
		rest = append([]byte(nil), cand[nctx+len(m.held):]...)
	}
	m.endCtx()
	return nil, rest, false
}

func (m *Masker) endCtx() {
	secret.Wipe(m.ctx)
	secret.Wipe(m.held)
	m.ctx, m.held, m.ctxMasked = nil, nil, false
}

// scan returns the masked output that can be released and the tail to
// hold (a proper prefix of some pattern that reaches the end of data).
func (m *Masker) scan(data []byte) (out, held []byte) {
	if len(m.pats) == 0 {
		return append([]byte(nil), data...), nil
	}
	out = make([]byte, 0, len(data))
	for i := 0; i < len(data); {
		if !m.first[data[i]] {
			out = append(out, data[i])
			i++
			continue
		}
		rest := data[i:]
		if n := m.fullMatch(rest); n > 0 {
			out = append(out, Mask...)
			i += n
			continue
		}
		if len(rest) < m.maxLen && m.partialMatch(rest) {
			return out, rest
		}
		out = append(out, data[i])
		i++
	}
	return out, nil
}

func (m *Masker) fullMatch(rest []byte) int {
	for _, p := range m.pats {
		if len(rest) >= len(p) && string(rest[:len(p)]) == p {
			return len(p)
		}
	}
	return 0
}

func (m *Masker) partialMatch(rest []byte) bool {
	for _, p := range m.pats {
		if len(rest) < len(p) && p[:len(rest)] == string(rest) {
			return true
		}
	}
	return false
}

// Flush releases the held tail: printed if shorter than four bytes, else
// replaced by the mask.
func (m *Masker) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flushLocked()
}

func (m *Masker) flushLocked() error {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	if len(m.held) == 0 || m.lastErr != nil {
		return m.lastErr
	}
	// The held bytes are a possible start of a value (after ctx, if
	// any): release them raw while the whole start is short, as one
	// mask once it is not, and remember them so that the rest of the
	// value is still masked when it comes.
	var out []byte
	switch {
	case m.ctxMasked:
	case len(m.ctx)+len(m.held) >= partialMaskLen:
		out, m.ctxMasked = []byte(Mask), true
	default:
		out = append([]byte(nil), m.held...)
	}
	m.ctx = append(m.ctx, m.held...)
	secret.Wipe(m.held)
	m.held = nil
	var err error
	if len(out) > 0 {
		_, err = m.w.Write(out)
	}
	if err != nil {
		m.lastErr = err
	}
	return err
}

// Close flushes the held tail. It does not close the underlying writer.
func (m *Masker) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	err := m.flushLocked()
	m.endCtx()
	m.closed = true
	return err
}

var _ io.WriteCloser = (*Masker)(nil)
