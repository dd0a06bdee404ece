package config

import (
	"fmt"
	"time"
)

// Console configures the web console for operators (console.listen). The
// zero value serves none.
type Console struct {
	// Listen (console.listen) is the TCP host:port of the web console; ""
	// (the default) serves none. A non-loopback address requires
	// TLS (tls_cert and tls_key, or tls_local_ca): the console is never served in clear off
	// loopback. Logging in takes an admin bearer token (admin.tokens) and,
	// once enrolled, a TOTP code.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey (console.tls_cert, console.tls_key) are PEM files
	// of the console's certificate and key; both or neither.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLSLocalCA (console.tls_local_ca) serves a certificate issued by
	// keystile's local CA (trust it with `keystile ca export`) instead of
	// tls_cert/tls_key. Default false.
	TLSLocalCA bool `yaml:"tls_local_ca"`
	// TLSNames (console.tls_names) are the DNS names and IP addresses of
	// the local CA's certificate. Default: localhost, 127.0.0.1 and ::1
	// plus the listen host when it is a specific one. Only with
	// tls_local_ca.
	TLSNames []string `yaml:"tls_names"`
	// AllowCIDRs (console.allow_cidrs) are the client addresses (CIDR
	// prefixes or bare addresses) the console accepts a connection from;
	// any other connection is closed before TLS or HTTP. Default (empty):
	// loopback only.
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// SessionTTL (console.session_ttl) is the longest a console session
	// lasts, however active. Default 1h; at most 12h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// IdleTimeout (console.idle_timeout) ends a session after this long
	// without a request (live updates do not count). Default 15m; at most
	// session_ttl.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Bounds and defaults of console.
const (
	DefaultConsoleSessionTTL  = time.Hour
	DefaultConsoleIdleTimeout = 15 * time.Minute
	MaxConsoleSessionTTL      = 12 * time.Hour
)

// console checks the console section.
func (ck *checker) console(c Console, adminTokens int) {
	ck.listen("console.listen", c.Listen, "127.0.0.1:7880")
	if (c.TLSCert == "") != (c.TLSKey == "") {
		ck.add("console.tls_key", "console.tls_cert and console.tls_key go together: set both or neither")
	}
	if c.TLSLocalCA && c.TLSCert != "" {
		ck.add("console.tls_local_ca", "either the local CA's certificate (console.tls_local_ca) or your own (console.tls_cert), not both")
	}
	if len(c.TLSNames) > 0 && !c.TLSLocalCA {
		ck.add("console.tls_names", "only used with console.tls_local_ca")
	}
	if c.Listen == "" {
		for _, k := range []struct {
			key string
			set bool
		}{{"console.tls_cert", c.TLSCert != ""}, {"console.tls_local_ca", c.TLSLocalCA}, {"console.allow_cidrs", len(c.AllowCIDRs) > 0}} {
			if k.set {
				ck.add(k.key, "only used with console.listen (the web console), which is not set")
			}
		}
	} else {
		if !IsLoopbackListen(c.Listen) && c.TLSCert == "" && !c.TLSLocalCA {
			ck.add("console.listen", "%q is not a loopback address: the web console is served off this host only over TLS (set console.tls_local_ca, or console.tls_cert and console.tls_key)", c.Listen)
		}
		if adminTokens == 0 {
			ck.add("console.listen", "logging in to the console takes an admin token: add one to admin.tokens (keystile admin token new --name NAME)")
		}
	}
	for i, s := range c.AllowCIDRs {
		if _, err := ParseAllowCIDR(s); err != nil {
			ck.add(fmt.Sprintf("console.allow_cidrs[%d]", i), "%v", err)
		}
	}
	ck.positive("console.session_ttl", c.SessionTTL)
	ck.positive("console.idle_timeout", c.IdleTimeout)
	if c.SessionTTL > MaxConsoleSessionTTL {
		ck.add("console.session_ttl", "must be at most %s (console sessions are meant to be short), got %s", MaxConsoleSessionTTL, c.SessionTTL)
	}
	if ttl, idle := or(c.SessionTTL, DefaultConsoleSessionTTL), or(c.IdleTimeout, DefaultConsoleIdleTimeout); ttl > 0 && idle > ttl {
		ck.add("console.idle_timeout", "must be at most console.session_ttl (%s), got %s", ttl, idle)
	}
}
