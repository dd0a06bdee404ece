package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// AdminTokenNamePattern is the pattern admin.tokens[].name must match.
const AdminTokenNamePattern = `^[a-z0-9][a-z0-9_-]{0,31}$` // #nosec G101 -- a name pattern

// Bounds of admin.mfa.
const (
	MaxAdminSessionTTL = time.Hour
	MaxAdminLockout    = 24 * time.Hour
)

// IsLoopbackListen reports whether a host:port listen address binds only
// loopback: localhost or a loopback IP. An empty host (all interfaces) is
// not loopback.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// ParseAllowCIDR parses one admin.allow_cidrs entry: a CIDR prefix or a
// bare address (a /32 or /128). IPv4-mapped IPv6 forms are unmapped, so
// that ::ffff:10.0.0.0/104 and 10.0.0.0/8 mean the same clients.
func ParseAllowCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("prefix %q is wider than the IPv4-mapped range", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("want a CIDR prefix or an IP address, got %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// admin checks the admin section beyond socket and uids.
// console says whether console.listen is set: the console logs in with
// admin.tokens too.
func (ck *checker) admin(a Admin, console bool) {
	ck.listen("admin.listen", a.Listen, "127.0.0.1:7879")
	if (a.TLSCert == "") != (a.TLSKey == "") {
		ck.add("admin.tls_key", "admin.tls_cert and admin.tls_key go together: set both or neither")
	}
	if a.Listen == "" {
		for _, k := range []struct {
			key string
			set bool
		}{{"admin.tls_cert", a.TLSCert != ""}, {"admin.allow_cidrs", len(a.AllowCIDRs) > 0}} {
			if k.set {
				ck.add(k.key, "only used with admin.listen (the TCP admin listener), which is not set")
			}
		}
		if len(a.Tokens) > 0 && !console {
			ck.add("admin.tokens", "only used with admin.listen (the TCP admin listener) or console.listen (the web console), neither of which is set")
		}
	} else {
		if !IsLoopbackListen(a.Listen) && a.TLSCert == "" {
			ck.add("admin.listen", "%q is not a loopback address: the admin API leaves this host only over TLS (set admin.tls_cert and admin.tls_key)", a.Listen)
		}
		if len(a.Tokens) == 0 {
			ck.add("admin.tokens", "required with admin.listen: at least one admin bearer token digest (keystile admin token new --name NAME)")
		}
	}
	for i, c := range a.AllowCIDRs {
		if _, err := ParseAllowCIDR(c); err != nil {
			ck.add(fmt.Sprintf("admin.allow_cidrs[%d]", i), "%v", err)
		}
	}
	nameRE := regexp.MustCompile(AdminTokenNamePattern)
	names, digests := map[string]bool{}, map[string]bool{}
	for i, t := range a.Tokens {
		key := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case !nameRE.MatchString(t.Name):
			ck.add(key+".name", "must match [a-z0-9][a-z0-9_-]{0,31}, got %q", t.Name)
		case names[t.Name]:
			ck.add(key+".name", "duplicate token name %q", t.Name)
		}
		names[t.Name] = true
		d := strings.ToLower(t.SHA256)
		if b, err := hex.DecodeString(d); err != nil || len(b) != 32 {
			ck.add(key+".sha256", "must be 64 hex digits (the SHA-256 of the token; never the token itself)")
		} else if digests[d] {
			ck.add(key+".sha256", "duplicate token digest")
		}
		digests[d] = true
	}

	m := a.MFA
	ck.positive("admin.mfa.session_ttl", m.SessionTTL)
	if m.SessionTTL > MaxAdminSessionTTL {
		ck.add("admin.mfa.session_ttl", "must be at most %s (sessions are meant to be short), got %s", MaxAdminSessionTTL, m.SessionTTL)
	}
	if m.MaxFailures < 0 || m.MaxFailures > 100 || (m.MaxFailures == 0 && ck.d.present("admin.mfa.max_failures")) {
		ck.add("admin.mfa.max_failures", "must be between 1 and 100, got %d", m.MaxFailures)
	}
	ck.positive("admin.mfa.lockout", m.Lockout)
	ck.positive("admin.mfa.max_lockout", m.MaxLockout)
	if m.MaxLockout > MaxAdminLockout {
		ck.add("admin.mfa.max_lockout", "must be at most %s, got %s", MaxAdminLockout, m.MaxLockout)
	}
	def := Default().Admin.MFA
	if lo, mx := or(m.Lockout, def.Lockout), or(m.MaxLockout, def.MaxLockout); lo > 0 && mx > 0 && mx < lo {
		ck.add("admin.mfa.max_lockout", "must be >= admin.mfa.lockout (%s), got %s", lo, mx)
	}
	if strings.ContainsAny(m.Issuer, ":/?#&%") || len(m.Issuer) > 64 || (m.Issuer == "" && ck.d.present("admin.mfa.issuer")) {
		ck.add("admin.mfa.issuer", "must be 1 to 64 characters without : / ? # & %%, got %q", m.Issuer)
	}
}
