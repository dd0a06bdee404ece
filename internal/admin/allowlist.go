package admin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/config"
)

// AllowList is the set of client addresses a non-socket admin listener
// (admin.listen; the web console's console.listen) accepts. It is checked
// before anything else: Listener closes a refused connection right after
// accept, before TLS or HTTP, and Handler checks again per request. Only
// the connection's own address counts, never a header (X-Forwarded-For
// and the like are ignored). IPv4-mapped IPv6 addresses are unmapped and
// zones dropped before matching.
type AllowList struct {
	prefixes []netip.Prefix
}

// NewAllowList parses CIDR prefixes or bare addresses (admin.allow_cidrs).
// An empty list allows loopback only.
func NewAllowList(cidrs []string) (*AllowList, error) {
	if len(cidrs) == 0 {
		return LoopbackOnly(), nil
	}
	a := &AllowList{}
	for _, c := range cidrs {
		p, err := config.ParseAllowCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("admin: allow list: %w", err)
		}
		a.prefixes = append(a.prefixes, p)
	}
	return a, nil
}

// LoopbackOnly allows 127.0.0.0/8 and ::1.
func LoopbackOnly() *AllowList {
	return &AllowList{prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// Allows reports whether a client address is on the list.
func (a *AllowList) Allows(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return false
	}
	for _, p := range a.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// AllowsAddr is Allows for a net.Addr (a TCP peer); anything else is refused.
func (a *AllowList) AllowsAddr(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	return a.Allows(ta.AddrPort().Addr())
}

// String lists the prefixes.
func (a *AllowList) String() string {
	s := make([]string, len(a.prefixes))
	for i, p := range a.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Listener wraps ln so that connections from addresses not on the list are
// closed as soon as they are accepted; refused (which may be nil) hears of
// each one, at most once a second with the count since (a scan must not
// flood the log).
func (a *AllowList) Listener(ln net.Listener, refused func(addr net.Addr, count uint64)) net.Listener {
	return &allowListener{Listener: ln, a: a, refused: refused}
}

type allowListener struct {
	net.Listener
	a       *AllowList
	refused func(net.Addr, uint64)
	count   atomic.Uint64
	last    atomic.Int64 // unix nanos of the last report
}

func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.a.AllowsAddr(c.RemoteAddr()) {
			return c, nil
		}
		_ = c.Close()
		n := l.count.Add(1)
		now := time.Now().UnixNano()
		if last := l.last.Load(); l.refused != nil && now-last >= int64(time.Second) && l.last.CompareAndSwap(last, now) {
			l.refused(c.RemoteAddr(), n)
		}
	}
}

// Handler refuses requests whose connection address is not on the list
// with 403 and a fixed message, before next sees them.
func (a *AllowList) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !a.Allows(ap.Addr()) {
			WriteError(w, http.StatusForbidden, "forbidden", "this address may not use the admin API")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// errNotLoopback refuses a plain-HTTP listener off loopback.
var errNotLoopback = errors.New("admin: a TCP admin listener off loopback needs TLS (admin.tls_cert, admin.tls_key)")
