package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Validate checks c as Parse would, without source positions: the
// returned *Error values have File "" and Line 0. Zero sizes and durations
// are accepted here (they mean "the default"); Parse additionally rejects
// an explicit zero written in the file.
func (c *Config) Validate() error {
	v := &decoder{pos: map[string]position{}}
	v.errs = validate(c, v)
	if len(v.errs) == 0 {
		return nil
	}
	return v.join()
}

type checker struct {
	d    *decoder
	errs []*Error
}

func (ck *checker) add(key, format string, args ...any) {
	e := &Error{File: ck.d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	e.Line, e.Column = ck.d.at(key)
	ck.errs = append(ck.errs, e)
}

func (ck *checker) oneOf(key, val string, allowed ...string) {
	if val != "" && !slices.Contains(allowed, val) {
		ck.add(key, "must be one of %s, got %q", strings.Join(allowed, "|"), val)
	}
}

// positive rejects a negative duration, and a zero one that was written
// in the file (a zero left by the zero Config means the default).
// listen checks a host:port listen address ("" is allowed: disabled).
func (ck *checker) listen(key, addr, example string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		ck.add(key, "must be host:port (e.g. %s), got %q", example, addr)
	} else if p, perr := strconv.ParseUint(port, 10, 16); perr != nil || (p == 0 && port != "0") {
		ck.add(key, "invalid port %q", port)
	} else if strings.ContainsAny(host, " /") {
		ck.add(key, "invalid host %q", host)
	}
}

func (ck *checker) positive(key string, d time.Duration) {
	if d < 0 || (d == 0 && ck.d.present(key)) {
		ck.add(key, "must be positive, got %s", d)
	}
}

func (ck *checker) positiveInt(key string, n int64) {
	if n < 0 || (n == 0 && ck.d.present(key)) {
		ck.add(key, "must be positive, got %d", n)
	}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// VenueIDPattern is the pattern venue ids must match.
const VenueIDPattern = `^[a-z0-9][a-z0-9_-]{0,31}$`

func validate(c *Config, d *decoder) []*Error {
	ck := &checker{d: d}
	def := Default()

	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "text", "json")
	ck.oneOf("master_key.source", c.MasterKey.Source, "file", "passphrase", "keyring", "env")
	for i, uid := range c.Admin.AllowedUIDs {
		if uid < 0 {
			ck.add(fmt.Sprintf("admin.allowed_uids[%d]", i), "uid must be >= 0, got %d", uid)
		}
	}
	ck.admin(c.Admin, c.Console.Listen != "")
	ck.console(c.Console, len(c.Admin.Tokens))

	g := c.Gateway
	ck.listen("gateway.listen", g.Listen, "127.0.0.1:7878")
	ck.listen("metrics.listen", c.Metrics.Listen, "127.0.0.1:9464")
	ck.positiveInt("gateway.max_body_bytes", g.MaxBodyBytes)
	ck.positiveInt("gateway.max_header_bytes", int64(g.MaxHeaderBytes))
	ck.positive("gateway.read_header_timeout", g.ReadHeaderTimeout)
	ck.positive("gateway.read_timeout", g.ReadTimeout)
	ck.positive("gateway.write_timeout", g.WriteTimeout)
	ck.positive("gateway.idle_timeout", g.IdleTimeout)
	ck.gatewayTLS(g.TLS)

	ck.listen("proxy.listen", c.Proxy.Listen, "127.0.0.1:7879")
	ck.positiveInt("proxy.max_tunnels", int64(c.Proxy.MaxTunnels))
	if c.Proxy.Listen != "" && (c.Proxy.Listen == g.Listen || c.Proxy.Listen == c.Metrics.Listen) && !strings.HasSuffix(c.Proxy.Listen, ":0") {
		ck.add("proxy.listen", "must differ from gateway.listen and metrics.listen, got %q", c.Proxy.Listen)
	}
	ck.positive("local_ca.leaf_ttl", c.LocalCA.LeafTTL)
	if d := c.LocalCA.LeafTTL; d != 0 && (d < 10*time.Minute || d > 720*time.Hour) {
		ck.add("local_ca.leaf_ttl", "must be between 10m and 720h, got %s", d)
	}

	ck.positive("tokens.default_ttl", c.Tokens.DefaultTTL)
	ck.positive("tokens.max_ttl", c.Tokens.MaxTTL)
	if dt, mt := or(c.Tokens.DefaultTTL, def.Tokens.DefaultTTL), or(c.Tokens.MaxTTL, def.Tokens.MaxTTL); dt > 0 && mt > 0 && mt < dt {
		ck.add("tokens.max_ttl", "must be >= tokens.default_ttl (%s), got %s", dt, mt)
	}

	ck.oneOf("audit.sink", c.Audit.Sink, "sqlite", "jsonl", "stdout")
	ck.oneOf("audit.mirror", c.Audit.Mirror, "stdout")
	if c.Audit.Sink == "stdout" && c.Audit.Path != "" {
		ck.add("audit.path", "not used with audit.sink stdout")
	}
	if c.Audit.Sink == "stdout" && c.Audit.Mirror != "" {
		ck.add("audit.mirror", "audit.sink is already stdout")
	}
	if c.Audit.CheckpointEvery < 0 || c.Audit.CheckpointEvery > 1_000_000 {
		ck.add("audit.checkpoint_every", "must be between 1 and 1000000, got %d", c.Audit.CheckpointEvery)
	}
	if c.Audit.MaxBatch < 0 || c.Audit.MaxBatch > 65536 {
		ck.add("audit.max_batch", "must be between 1 and 65536, got %d", c.Audit.MaxBatch)
	}
	ck.positive("idempotency.window", c.Idempotency.Window)
	if c.Idempotency.Window > 30*24*time.Hour {
		ck.add("idempotency.window", "must be at most 720h, got %s", c.Idempotency.Window)
	}

	ck.alerts(c.Alerts)
	ck.killSwitch(c.KillSwitch)
	ck.detect(c.Detect)
	ck.store(c.Store)

	ids := make([]string, 0, len(c.Venues))
	for id := range c.Venues {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	idRE := regexp.MustCompile(VenueIDPattern)
	for _, id := range ids {
		ck.venue(id, c.Venues[id], idRE)
	}
	return ck.errs
}

func (ck *checker) venue(id string, v Venue, idRE *regexp.Regexp) {
	p := "venues." + id
	if !idRE.MatchString(id) {
		ck.add(p, "invalid venue id %q: must match [a-z0-9][a-z0-9_-]{0,31}", id)
	}
	switch v.Type {
	case "":
		ck.add(p+".type", "required ("+venueTypes+")")
	case TypeStake, TypeDMarket, TypeBetfair, TypeSTAPI, TypeGeneric, TypeBinance, TypeKraken, TypeOKX, TypeBybit, TypeCoinbase:
	default:
		ck.add(p+".type", "must be one of "+venueTypes+", got %q", v.Type)
	}
	if strings.TrimSpace(v.Credential) == "" {
		ck.add(p+".credential", "required: the name of a vault credential")
	} else if strings.ContainsFunc(v.Credential, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		ck.add(p+".credential", "credential name must not contain spaces or control characters")
	}
	if v.BaseURL == "" {
		ck.add(p+".base_url", "required")
	} else {
		ck.url(p+".base_url", v.BaseURL, v.Sandbox)
	}
	ck.url(p+".test_base_url", v.TestBaseURL, v.Sandbox)
	ck.url(p+".identity_url", v.IdentityURL, v.Sandbox)
	if v.Type != TypeBetfair {
		if v.IdentityURL != "" {
			ck.add(p+".identity_url", "only valid for type betfair")
		}
		if v.Login != "" {
			ck.add(p+".login", "only valid for type betfair")
		}
	} else {
		ck.oneOf(p+".login", v.Login, "certlogin", "login")
	}
	if v.Type == TypeKraken {
		ck.oneOf(p+".tier", v.Tier, "starter", "intermediate", "pro", "none")
	} else if v.Tier != "" {
		ck.add(p+".tier", "only valid for type kraken")
	}
	for i, h := range v.Hosts {
		if h == "" || strings.ContainsAny(h, "/@?# \t") {
			ck.add(fmt.Sprintf("%s.hosts[%d]", p, i), "must be a bare host name or host:port, got %q", h)
		}
	}
	ck.proxyHosts(p, v)

	switch v.TLS.MinVersion {
	case "", "1.2", "1.3":
	case "1.0", "1.1", "1", "1.00", "1.10":
		ck.add(p+".tls.min_version", "TLS below 1.2 is not allowed, got %q", v.TLS.MinVersion)
	default:
		ck.add(p+".tls.min_version", "must be \"1.2\" or \"1.3\", got %q", v.TLS.MinVersion)
	}

	dv := DefaultVenue()
	t := v.Timeouts
	ck.positive(p+".timeouts.connect", t.Connect)
	ck.positive(p+".timeouts.tls_handshake", t.TLSHandshake)
	ck.positive(p+".timeouts.response_header", t.ResponseHeader)
	ck.positive(p+".timeouts.total", t.Total)
	if rh, tot := or(t.ResponseHeader, dv.Timeouts.ResponseHeader), or(t.Total, dv.Timeouts.Total); rh > 0 && tot > 0 && tot < rh {
		ck.add(p+".timeouts.total", "must be >= timeouts.response_header (%s), got %s", rh, tot)
	}

	r := v.Retry
	if r.MaxAttempts < 0 || r.MaxAttempts > 10 || (r.MaxAttempts == 0 && ck.d.present(p+".retry.max_attempts")) {
		ck.add(p+".retry.max_attempts", "must be between 1 and 10, got %d", r.MaxAttempts)
	}
	ck.positive(p+".retry.initial_backoff", r.InitialBackoff)
	ck.positive(p+".retry.max_backoff", r.MaxBackoff)
	ck.positive(p+".retry.max_retry_after", r.MaxRetryAfter)
	if ib, mb := or(r.InitialBackoff, dv.Retry.InitialBackoff), or(r.MaxBackoff, dv.Retry.MaxBackoff); ib > 0 && mb > 0 && mb < ib {
		ck.add(p+".retry.max_backoff", "must be >= retry.initial_backoff (%s), got %s", ib, mb)
	}

	switch {
	case v.Type == TypeGeneric && len(v.Operations) == 0:
		ck.add(p+".operations", "required for type generic: list the routes and their operation names")
	case v.Type != TypeGeneric && v.Type != "" && len(v.Operations) > 0:
		ck.add(p+".operations", "not allowed for type %s: its operations table is built in", v.Type)
	}
	for i, o := range v.Operations {
		op := fmt.Sprintf("%s.operations[%d]", p, i)
		switch o.Method {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*":
		default:
			ck.add(op+".method", "must be an upper-case HTTP method or *, got %q", o.Method)
		}
		if !strings.HasPrefix(o.Path, "/") || strings.ContainsAny(o.Path, "?# \t") {
			ck.add(op+".path", "must be a path pattern starting with /, got %q", o.Path)
		}
		if !opName.MatchString(o.Op) {
			ck.add(op+".op", "must be a dotted operation name like order.place, got %q", o.Op)
		}
	}

	switch {
	case v.Auth == nil && v.Type == TypeGeneric:
		ck.add(p+".auth", "required for type generic")
	case v.Auth != nil && v.Type != TypeGeneric && v.Type != TypeSTAPI:
		ck.add(p+".auth", "not allowed for type %s: its signing scheme is built in", v.Type)
	case v.Auth != nil:
		ck.auth(p+".auth", v.Auth, v.Sandbox)
	}
}

const venueTypes = "stake|dmarket|betfair|stapi|generic|binance|kraken|okx|bybit|coinbase"

var opName = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

func (ck *checker) auth(p string, a *Auth, sandbox bool) {
	schemes := []string{SchemeHeader, SchemeBearer, SchemeBasic, SchemeQuery, SchemeHMAC, SchemeRFC9421, SchemeEd25519, SchemeSigV4, SchemeOAuth2}
	if a.Scheme == "" {
		ck.add(p+".scheme", "required (%s)", strings.Join(schemes, "|"))
		return
	}
	if !slices.Contains(schemes, a.Scheme) {
		ck.add(p+".scheme", "must be one of %s, got %q", strings.Join(schemes, "|"), a.Scheme)
		return
	}
	switch a.Scheme {
	case SchemeHeader:
		if a.Header == "" && ck.d.present(p+".header") {
			ck.add(p+".header", "required for scheme header")
		}
	case SchemeQuery:
		if a.QueryParam == "" && ck.d.present(p+".query_param") {
			ck.add(p+".query_param", "required for scheme query")
		}
	case SchemeHMAC:
		h := a.HMAC
		hp := p + ".hmac"
		if h.Template == "" {
			ck.add(hp+".template", "required for scheme hmac")
		} else {
			ck.template(hp+".template", h.Template)
		}
		ck.oneOf(hp+".algorithm", h.Algorithm, "sha256", "sha384", "sha512")
		ck.oneOf(hp+".encoding", h.Encoding, "hex", "base64", "base64url")
		ck.oneOf(hp+".key_encoding", h.KeyEncoding, "raw", "hex", "base64")
		ck.oneOf(hp+".timestamp_format", h.TimestampFormat, "unix", "unix_ms", "iso8601_ms", "rfc1123")
		if h.SignatureHeader == "" && h.SignatureQueryParam == "" {
			ck.add(hp+".signature_header", "one of signature_header and signature_query_param is required")
		}
	case SchemeRFC9421:
		r := a.RFC9421
		ck.oneOf(p+".rfc9421.alg", r.Alg, "ed25519", "ecdsa-p256-sha256", "hmac-sha256")
		derived := []string{"@method", "@authority", "@path", "@query", "@target-uri", "@scheme", "@request-target"}
		for i, comp := range r.Components {
			ok := slices.Contains(derived, comp) || (comp != "" && strings.ToLower(comp) == comp && !strings.ContainsAny(comp, " \t\":;,()@"))
			if !ok {
				ck.add(fmt.Sprintf("%s.rfc9421.components[%d]", p, i), "unknown component %q: use a derived component (%s) or a lowercase header name", comp, strings.Join(derived, " "))
			}
		}
	case SchemeSigV4:
		if a.SigV4.Region == "" {
			ck.add(p+".sigv4.region", "required for scheme sigv4")
		}
		if a.SigV4.Service == "" {
			ck.add(p+".sigv4.service", "required for scheme sigv4")
		}
	case SchemeOAuth2:
		if a.OAuth2.TokenURL == "" {
			ck.add(p+".oauth2.token_url", "required for scheme oauth2")
		}
		ck.url(p+".oauth2.token_url", a.OAuth2.TokenURL, sandbox)
		ck.url(p+".oauth2.auth_url", a.OAuth2.AuthURL, sandbox)
		ck.oneOf(p+".oauth2.client_auth", a.OAuth2.ClientAuth, "basic", "body")
	}
}

// template checks an HMAC template: only known {placeholders}, balanced braces.
func (ck *checker) template(key, t string) {
	allowed := HMACPlaceholders()
	rest := t
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			return
		}
		if rest[i] == '}' {
			ck.add(key, "unbalanced \"}\" in template")
			return
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			ck.add(key, "unterminated \"{\" in template")
			return
		}
		name := rest[i+1 : i+j]
		if !slices.Contains(allowed, name) {
			ck.add(key, "unknown placeholder {%s} (allowed: {%s})", name, strings.Join(allowed, "} {"))
		}
		rest = rest[i+j+1:]
	}
}

// url checks an upstream URL: https, or http with sandbox to a loopback
// host; no userinfo, query or fragment.
// proxyHosts checks venues.<id>.proxy_hosts: a sandbox venue's aliases
// for real hosts. They must never send a live token's traffic anywhere, so
// the venue must be sandbox: true with every URL on a loopback host.
func (ck *checker) proxyHosts(p string, v Venue) {
	if len(v.ProxyHosts) == 0 {
		return
	}
	if !v.Sandbox {
		ck.add(p+".proxy_hosts", "only valid with sandbox: true (it routes a real host's CONNECTs to this venue)")
		return
	}
	for _, raw := range []string{v.BaseURL, v.TestBaseURL, v.IdentityURL} {
		if u, err := url.Parse(raw); raw != "" && (err != nil || !isLoopback(u.Hostname())) {
			ck.add(p+".proxy_hosts", "only valid when every URL of the venue is on a loopback host, got %q", raw)
			return
		}
	}
	for i, h := range v.ProxyHosts {
		host := h
		if strings.ContainsAny(h, "/@?#*[] \t") {
			ck.add(fmt.Sprintf("%s.proxy_hosts[%d]", p, i), "must be a venue's host name (e.g. api.binance.com) or host:port, got %q", h)
			continue
		}
		if hh, port, err := net.SplitHostPort(h); err == nil {
			n, perr := strconv.Atoi(port)
			if perr != nil || n < 1 || n > 65535 {
				ck.add(fmt.Sprintf("%s.proxy_hosts[%d]", p, i), "bad port in %q", h)
				continue
			}
			host = hh
		}
		if host == "" || strings.ContainsAny(host, "/@?#:[]* \t") || isLoopback(host) {
			ck.add(fmt.Sprintf("%s.proxy_hosts[%d]", p, i), "must be a venue's host name (e.g. api.binance.com) or host:port, got %q", h)
		}
	}
}

func (ck *checker) url(key, raw string, sandbox bool) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		ck.add(key, "invalid URL %q", raw)
		return
	}
	if u.User != nil {
		ck.add(key, "must not contain userinfo (credentials belong in the vault)")
		return
	}
	if u.RawQuery != "" || u.ForceQuery {
		ck.add(key, "must not contain a query")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		ck.add(key, "must not contain a fragment")
	}
	if u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
		ck.add(key, "must be an absolute URL with a host, got %q", raw)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !sandbox {
			ck.add(key, "must be https:// (plain http only with sandbox: true to a loopback host)")
		} else if !isLoopback(u.Hostname()) {
			ck.add(key, "must be https://: sandbox allows http:// only to a loopback host, got %q", u.Hostname())
		}
	default:
		ck.add(key, "must be https:// (plain http only with sandbox: true to a loopback host)")
	}
}

// refSchemes are the secret reference schemes (see internal/secretref).
var refSchemes = []string{"env", "file", "dotenv", "keyring", "vault"}

func (ck *checker) gatewayTLS(t GatewayTLS) {
	ck.oneOf("gateway.tls.min_version", t.MinVersion, "1.2", "1.3")
	switch {
	case t.LocalCA && (t.CertFile != "" || t.Key != ""):
		ck.add("gateway.tls.local_ca", "use either local_ca or cert_file and key, not both")
	case t.CertFile != "" && t.Key == "":
		ck.add("gateway.tls.key", "required with cert_file (a secret reference such as file:/etc/keystile/tls.key)")
	case t.Key != "" && t.CertFile == "":
		ck.add("gateway.tls.cert_file", "required with key")
	}
	if t.Key != "" {
		scheme, rest, ok := strings.Cut(t.Key, ":")
		if !ok || rest == "" || !slices.Contains(refSchemes, scheme) {
			ck.add("gateway.tls.key", "must be a secret reference (%s), never the key itself", strings.Join(refSchemes, ":, ")+":")
		}
	}
	if len(t.Names) > 0 && !t.LocalCA {
		ck.add("gateway.tls.names", "only used with local_ca: true")
	}
	for i, n := range t.Names {
		if !validCertName(n) {
			ck.add(fmt.Sprintf("gateway.tls.names[%d]", i), "must be a DNS name or an IP address, got %q", n)
		}
	}
}

// validCertName accepts an IP address or a DNS name (no wildcard, no port).
func validCertName(n string) bool {
	if net.ParseIP(strings.Trim(n, "[]")) != nil {
		return true
	}
	n = strings.TrimSuffix(n, ".")
	if n == "" || len(n) > 253 || strings.Trim(n, "0123456789.") == "" {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range strings.ToLower(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
