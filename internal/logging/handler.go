package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
)

// Options configures New.
type Options struct {
	// Level is the minimum level logged (zero: info).
	Level slog.Level
	// Format is "text" (default, also for "") or "json". Any other value
	// is treated as text; validate it with the config package first.
	Format string
	// Redactor holds the registered secret values. If nil, only sensitive
	// keys and client tokens are redacted.
	Redactor *Redactor
}

// New returns a logger writing to w (nil: discard) through a redacting
// Handler.
func New(w io.Writer, o Options) *slog.Logger {
	if w == nil {
		w = io.Discard
	}
	ho := &slog.HandlerOptions{Level: o.Level}
	var inner slog.Handler
	if strings.EqualFold(o.Format, "json") {
		inner = slog.NewJSONHandler(w, ho)
	} else {
		inner = slog.NewTextHandler(w, ho)
	}
	return slog.New(NewHandler(inner, o.Redactor))
}

// ErrLevel is returned by ParseLevel for an unknown level name.
var ErrLevel = errors.New("logging: unknown level")

// ParseLevel parses debug, info, warn (or warning) and error,
// case-insensitively; "" is info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%w %q (want debug|info|warn|error)", ErrLevel, s)
}

// Handler is a slog.Handler that redacts before delegating to another
// handler. Attributes added with WithAttrs are scrubbed at each Handle
// against the values registered at that time (the derived inner handler
// is cached until the registered set changes), so a secret registered
// after a logger was derived is still caught.
type Handler struct {
	inner  slog.Handler
	r      *Redactor
	ops    []op // WithGroup/WithAttrs calls, in order
	cache  *atomic.Pointer[built]
	sensit map[string]struct{}
}

type op struct {
	group string
	attrs []slog.Attr
}

type built struct {
	gen uint64
	h   slog.Handler
}

// NewHandler wraps inner with redaction using r (nil: keys and tokens only).
func NewHandler(inner slog.Handler, r *Redactor) *Handler {
	return &Handler{inner: inner, r: r, cache: new(atomic.Pointer[built]), sensit: sensitiveKeys()}
}

// sensitiveKeys returns attribute keys (lowercase, '_' as '-') whose
// values are always redacted.
func sensitiveKeys() map[string]struct{} {
	m := map[string]struct{}{}
	for _, k := range []string{
		"authorization", "proxy-authorization", "cookie", "set-cookie", "keystile-token",
		"x-api-key", "x-mbx-apikey", "api-key", "api-sign", "x-request-sign", "x-access-token",
		"x-authentication", "x-application", "x-stapi-api-key", "ok-access-key", "ok-access-sign",
		"ok-access-passphrase", "x-bapi-api-key", "x-bapi-sign", "signature", "password", "secret",
		"token", "client-secret", "access-token", "refresh-token", "secret-key", "passphrase",
	} {
		m[k] = struct{}{}
	}
	return m
}

func (h *Handler) isSensitive(key string) bool {
	if len(key) > 32 {
		return false
	}
	var buf [32]byte
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		buf[i] = c
	}
	_, ok := h.sensit[string(buf[:len(key)])]
	return ok
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(op{attrs: slices.Clone(attrs)})
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(op{group: name})
}

func (h *Handler) with(o op) *Handler {
	ops := make([]op, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &Handler{inner: h.inner, r: h.r, ops: append(ops, o), cache: new(atomic.Pointer[built]), sensit: h.sensit}
}

// derived returns inner with the scrubbed ops applied, cached per
// generation of the Redactor.
func (h *Handler) derived() slog.Handler {
	if len(h.ops) == 0 {
		return h.inner
	}
	gen := h.r.generation()
	if b := h.cache.Load(); b != nil && b.gen == gen {
		return b.h
	}
	d := h.inner
	for _, o := range h.ops {
		if o.attrs == nil {
			d = d.WithGroup(h.r.ScrubString(o.group))
			continue
		}
		as := make([]slog.Attr, len(o.attrs))
		for i, a := range o.attrs {
			as[i] = h.attr(a, 0)
		}
		d = d.WithAttrs(as)
	}
	h.cache.Store(&built{gen: gen, h: d})
	return d
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.ScrubString(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a, 0))
		return true
	})
	return h.derived().Handle(ctx, out)
}

const maxDepth = 16

func (h *Handler) attr(a slog.Attr, depth int) slog.Attr {
	a.Key = h.r.ScrubString(a.Key)
	a.Value = a.Value.Resolve()
	if h.isSensitive(a.Key) {
		return slog.String(a.Key, redacted)
	}
	a.Value = h.value(a.Value, depth)
	return a
}

func (h *Handler) value(v slog.Value, depth int) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(h.r.ScrubString(v.String()))
	case slog.KindGroup:
		if depth >= maxDepth {
			return slog.StringValue(redacted)
		}
		g := v.Group()
		as := make([]slog.Attr, len(g))
		for i, a := range g {
			as[i] = h.attr(a, depth+1)
		}
		return slog.GroupValue(as...)
	case slog.KindAny:
		return h.anyValue(v.Any(), depth)
	default: // numbers, bools, durations, times: no secret text
		return v
	}
}

func (h *Handler) anyValue(x any, depth int) slog.Value {
	switch t := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case error:
		return slog.StringValue(h.r.ScrubString(t.Error()))
	case []byte:
		return slog.StringValue(h.r.ScrubString(string(t)))
	case http.Header:
		return h.multiMap(t, depth)
	case url.Values:
		return h.multiMap(t, depth)
	case *url.URL:
		if t == nil {
			return slog.StringValue("<nil>")
		}
		return slog.StringValue(h.r.ScrubString(h.redactURL(*t)))
	case url.URL:
		return slog.StringValue(h.r.ScrubString(h.redactURL(t)))
	case fmt.Stringer:
		return slog.StringValue(h.r.ScrubString(t.String()))
	}
	return slog.StringValue(h.r.ScrubString(fmt.Sprintf("%+v", x)))
}

// multiMap logs a header or query map as a group: every key, with the
// values of sensitive keys redacted.
func (h *Handler) multiMap(m map[string][]string, depth int) slog.Value {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	as := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		as = append(as, h.attr(slog.String(k, strings.Join(m[k], ", ")), depth+1))
	}
	return slog.GroupValue(as...)
}

func (h *Handler) redactURL(u url.URL) string {
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err == nil {
			for k := range q {
				if h.isSensitive(k) {
					q[k] = []string{redacted}
				}
			}
			u.RawQuery = q.Encode()
		} else {
			u.RawQuery = redacted // cannot tell keys from values: fail closed
		}
	}
	return u.String()
}

var _ slog.Handler = (*Handler)(nil)
