package gateway

import (
	"context"
	"net/http"
	"net/url"
	"sort"

	"github.com/keystile/keystile/internal/venue"
)

// DirectEndpoint is one served venue endpoint keystile can send requests
// of its own to (cancelling orders for the kill switch).
type DirectEndpoint struct {
	Venue string
	Test  bool // the test endpoint (kst_test_ tokens)
	Impl  venue.Venue
	// Send signs and sends a request exactly like a bot's is: the venue's
	// Authenticate inside the vault, its retry policy and upstream
	// transport, and the answer scrubbed of credential echoes.
	Send venue.Sender
}

// Direct lists every served venue endpoint, by venue id, live first.
func (g *Gateway) Direct() []DirectEndpoint {
	set := *g.venues.Load()
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []DirectEndpoint
	for _, id := range ids {
		s := set[id]
		for _, ep := range []struct {
			test bool
			base *url.URL
			rt   http.RoundTripper
		}{{false, s.liveBase, s.liveRT}, {true, s.testBase, s.testRT}} {
			if ep.rt == nil || ep.base == nil {
				continue
			}
			base, rt, test := ep.base, ep.rt, ep.test
			out = append(out, DirectEndpoint{Venue: id, Test: test, Impl: s.impl,
				Send: func(ctx context.Context, r *venue.Request) (int, []byte, error) {
					return g.send(venue.WithTestEndpoint(ctx, test), base, rt, r)
				}})
		}
	}
	return out
}
