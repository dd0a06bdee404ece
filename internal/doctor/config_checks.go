package doctor

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/config"
)

// MaxTotalTimeout is the longest total upstream timeout doctor accepts.
const MaxTotalTimeout = 2 * time.Minute

func (r *run) venueIDs() []string {
	ids := make([]string, 0, len(r.Config.Venues))
	for id := range r.Config.Venues {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (r *run) noVenues(c Check) (Check, bool) {
	if len(r.Config.Venues) == 0 {
		c.Result, c.Detail = Pass, "no venues configured"
		return c, true
	}
	return c, false
}

func (r *run) venuesPlainHTTP() Check {
	c := Check{ID: "venues.https", Title: "venues are reached over HTTPS", Severity: High,
		Fix: "use https:// URLs; plain http:// is only for the loopback sandbox"}
	if c, done := r.noVenues(c); done {
		return c
	}
	var bad []string
	for _, id := range r.venueIDs() {
		v := r.Config.Venues[id]
		urls := map[string]string{"base_url": v.BaseURL, "test_base_url": v.TestBaseURL, "identity_url": v.IdentityURL}
		if v.Auth != nil {
			urls["auth.oauth2.token_url"] = v.Auth.OAuth2.TokenURL
			urls["auth.oauth2.auth_url"] = v.Auth.OAuth2.AuthURL
		}
		for _, k := range []string{"base_url", "test_base_url", "identity_url", "auth.oauth2.token_url", "auth.oauth2.auth_url"} {
			if strings.HasPrefix(strings.ToLower(urls[k]), "http://") {
				bad = append(bad, fmt.Sprintf("venues.%s.%s is plain HTTP (%s)", id, k, urls[k]))
			}
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%d venue(s), all HTTPS", len(r.Config.Venues))
	return c
}

func (r *run) venuesQueryKey() Check {
	c := Check{ID: "venues.query-keys", Title: "no venue sends its key in the URL query", Severity: Medium,
		Fix: "prefer a header scheme (auth.scheme: header) if the venue accepts one: query strings end up in proxy and server logs"}
	if c, done := r.noVenues(c); done {
		return c
	}
	var bad []string
	for _, id := range r.venueIDs() {
		if a := r.Config.Venues[id].Auth; a != nil && a.Scheme == config.SchemeQuery {
			bad = append(bad, fmt.Sprintf("venues.%s uses auth.scheme query (parameter %q)", id, a.QueryParam))
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, "keys travel in headers or signatures"
	return c
}

func (r *run) venuesTLS() Check {
	c := Check{ID: "venues.tls", Title: "upstream TLS minimum version", Severity: Low}
	if c, done := r.noVenues(c); done {
		return c
	}
	var notes []string
	for _, id := range r.venueIDs() {
		mv := r.Config.Venues[id].TLS.MinVersion
		switch mv {
		case "1.3":
		case "", "1.2":
			notes = append(notes, fmt.Sprintf("note: venues.%s allows TLS 1.2; set tls.min_version: \"1.3\" if the venue supports it", id))
		default:
			c.Result, c.Detail = Fail, fmt.Sprintf("venues.%s has tls.min_version %q", id, mv)
			c.Fix = `set tls.min_version: "1.2" or "1.3"`
			return c
		}
	}
	c.Result = Pass
	c.Detail = "every venue requires TLS 1.2 or later"
	if len(notes) > 0 {
		c.Detail += "\n" + list(notes)
	}
	return c
}

func (r *run) venuesTimeouts() Check {
	c := Check{ID: "venues.timeouts", Title: "upstream timeouts are set and bounded", Severity: Medium,
		Fix: fmt.Sprintf("set venues.<id>.timeouts (connect, tls_handshake, response_header, total <= %s)", MaxTotalTimeout)}
	if c, done := r.noVenues(c); done {
		return c
	}
	var bad []string
	for _, id := range r.venueIDs() {
		t := r.Config.Venues[id].Timeouts
		for _, kv := range []struct {
			k string
			d time.Duration
		}{{"connect", t.Connect}, {"tls_handshake", t.TLSHandshake}, {"response_header", t.ResponseHeader}, {"total", t.Total}} {
			if kv.d <= 0 {
				bad = append(bad, fmt.Sprintf("venues.%s.timeouts.%s is not set", id, kv.k))
			}
		}
		if t.Total > MaxTotalTimeout {
			bad = append(bad, fmt.Sprintf("venues.%s.timeouts.total is %s (> %s): a hung venue holds the bot that long", id, t.Total, MaxTotalTimeout))
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, "every venue has connect, handshake, header and total timeouts"
	return c
}

// listenerExposed reports whether a host:port listen address is reachable
// from other machines (not a loopback host).
func listenerExposed(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

func (r *run) listenersExposure() Check {
	c := Check{ID: "listeners.tls", Title: "bot-facing listeners are on loopback, or use TLS", Severity: High}
	g, p := r.Config.Gateway, r.Config.Proxy
	var bad, fixes, ok []string
	switch {
	case g.Listen == "":
		ok = append(ok, "gateway: no TCP listener")
	case !listenerExposed(g.Listen):
		ok = append(ok, fmt.Sprintf("gateway on %s (loopback)", g.Listen))
	case g.TLS.Enabled():
		ok = append(ok, fmt.Sprintf("gateway on %s with TLS", g.Listen))
	default:
		bad = append(bad, fmt.Sprintf("gateway.listen %s is reachable from the network without TLS: bots' tokens and orders travel in clear", g.Listen))
		fixes = append(fixes, "set gateway.tls (local_ca: true, or cert_file and key) or listen on 127.0.0.1")
	}
	switch {
	case p.Listen == "":
		ok = append(ok, "forward proxy off")
	case !listenerExposed(p.Listen):
		ok = append(ok, fmt.Sprintf("forward proxy on %s (loopback)", p.Listen))
	default:
		bad = append(bad, fmt.Sprintf("proxy.listen %s is reachable from the network: each CONNECT carries the bot's token in clear (Proxy-Authorization)", p.Listen))
		fixes = append(fixes, "keep the forward proxy on loopback (proxy.listen: 127.0.0.1:7879); bots on other hosts use the gateway with TLS")
	}
	if len(bad) > 0 {
		c.Result, c.Detail, c.Fix = Warn, list(bad), strings.Join(fixes, "; ")
		return c
	}
	c.Result, c.Detail = Pass, strings.Join(ok, "; ")
	return c
}
