package gateway

import (
	"context"
	"net/netip"
	"time"
)

// HeaderError is set on every answer keystile writes itself (a refusal or
// an upstream failure it reports), with the error code as its value; the
// gateway removes it from venues' answers. The forward proxy uses it to
// render keystile's refusals in the venue's own error format.
const HeaderError = "Keystile-Error"

type tunnelKey struct{}

// WithTunnelToken returns ctx carrying raw, the token a forward-proxy
// tunnel was opened with (from Proxy-Authorization on its CONNECT). The
// gateway then authenticates the request with raw, whatever token-like
// headers the request itself carries, and verifies it as it verifies
// every request (so a revocation or freeze applies from the tunnel's next
// request on).
func WithTunnelToken(ctx context.Context, raw string) context.Context {
	return context.WithValue(ctx, tunnelKey{}, raw)
}

func tunnelToken(ctx context.Context) (string, bool) {
	raw, ok := ctx.Value(tunnelKey{}).(string)
	return raw, ok
}

// AuthBlocked reports whether src has used up its failed authentications
// (the limit every request with a token is subject to), and how long it
// must wait. The forward proxy asks it before checking a CONNECT's token,
// so that both ways in share one limit.
func (g *Gateway) AuthBlocked(src netip.Addr) (time.Duration, bool) {
	return g.fails.blocked(src, g.now())
}

// AuthFailed records a failed authentication from src (a malformed,
// unknown, expired or revoked token).
func (g *Gateway) AuthFailed(src netip.Addr) { g.fails.fail(src, g.now()) }
