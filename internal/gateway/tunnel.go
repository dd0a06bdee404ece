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

// AuthFailure records a failed authentication from src under the
// gateway's own limits (authfail.go): err is the token's parse or
// verification error (token.ErrMalformed for an unreadable credential).
// When the failure is over its limit, it reports how long the client must
// wait and the rule to answer with (429). The forward proxy calls it for
// its CONNECTs, so that both ways in share one limit; as in the gateway, a
// token that verifies is never refused by it.
func (g *Gateway) AuthFailure(src netip.Addr, err error) (wait time.Duration, rule string, limited bool) {
	return g.fails.limit(src, err, g.now())
}
