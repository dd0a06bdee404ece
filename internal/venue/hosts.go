package venue

// HostRouter is implemented by venues whose API spans several hosts chosen
// by path (Binance serves USDⓈ-M futures under /fapi/ on fapi.binance.com,
// COIN-M under /dapi/ on dapi.binance.com). The gateway sends a request to
// the host UpstreamHost names; the upstream transport's allowlist and the
// forward proxy's routes take UpstreamHosts as well. Both are pure
// functions of their arguments.
type HostRouter interface {
	// UpstreamHost returns the host (host or host:port) that serves
	// escapedPath for an endpoint whose base URL's host is baseHost, or ""
	// for baseHost itself.
	UpstreamHost(baseHost, escapedPath string) string
	// UpstreamHosts returns every host other than baseHost that
	// UpstreamHost may return for baseHost.
	UpstreamHosts(baseHost string) []string
}
