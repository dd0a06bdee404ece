package binance

import (
	"github.com/keystile/keystile/internal/venue"
	"slices"
	"strings"
)

// siblings maps a spot REST host to the hosts of the other product lines
// by path prefix: USDⓈ-M futures (/fapi/), COIN-M futures (/dapi/) and
// portfolio margin (/papi/). Hosts not listed (a sandbox, a proxy) serve
// every path themselves.
func siblings(spot string) [][2]string {
	switch spot {
	case "api.binance.com":
		return [][2]string{{"/fapi/", "fapi.binance.com"}, {"/dapi/", "dapi.binance.com"}, {"/papi/", "papi.binance.com"}}
	case "testnet.binance.vision":
		return [][2]string{{"/fapi/", "testnet.binancefuture.com"}, {"/dapi/", "testnet.binancefuture.com"}}
	}
	return nil
}

// spotHost maps Binance's alternative spot hosts to api.binance.com.
func spotHost(baseHost string) string {
	h := strings.ToLower(strings.TrimSuffix(baseHost, ":443"))
	switch h {
	case "api1.binance.com", "api2.binance.com", "api3.binance.com", "api4.binance.com", "api-gcp.binance.com":
		return "api.binance.com"
	}
	return h
}

// SiblingHost returns the host serving escapedPath for a venue whose base
// URL host is baseHost ("" for baseHost itself): fapi.binance.com for
// /fapi/... below api.binance.com, and so on.
func SiblingHost(baseHost, escapedPath string) string {
	for _, s := range siblings(spotHost(baseHost)) {
		if strings.HasPrefix(escapedPath, s[0]) {
			return s[1]
		}
	}
	return ""
}

// SiblingHosts returns the hosts SiblingHost may return for baseHost.
func SiblingHosts(baseHost string) []string {
	var out []string
	for _, s := range siblings(spotHost(baseHost)) {
		if !slices.Contains(out, s[1]) {
			out = append(out, s[1])
		}
	}
	return out
}

// UpstreamHost implements venue.HostRouter.
func (v *Venue) UpstreamHost(baseHost, escapedPath string) string {
	return SiblingHost(baseHost, escapedPath)
}

// UpstreamHosts implements venue.HostRouter.
func (v *Venue) UpstreamHosts(baseHost string) []string { return SiblingHosts(baseHost) }

var _ venue.HostRouter = (*Venue)(nil)
