package killswitch

import (
	"context"

	"github.com/keystile/keystile/internal/token"
)

// Verifier verifies bot tokens (the gateway's Tokens; *token.Service).
type Verifier interface {
	Verify(ctx context.Context, raw string, r token.VerifyRequest) (*token.Token, error)
}

// Guard wraps a Verifier: a token the switch covers — itself, the venue
// it asks for, or everything — is refused with a *token.RefusedError
// wrapping token.ErrKilled, after every other check passed (a revoked
// token stays "revoked"). The check reads the in-memory snapshot only.
type Guard struct {
	next Verifier
	s    *Switch
}

// Guard returns next guarded by the switch.
func (s *Switch) Guard(next Verifier) *Guard { return &Guard{next: next, s: s} }

// Verify implements Verifier.
func (g *Guard) Verify(ctx context.Context, raw string, r token.VerifyRequest) (*token.Token, error) {
	t, err := g.next.Verify(ctx, raw, r)
	if err != nil {
		return t, err
	}
	st := g.s.state.Load()
	killed := st.covers(t.ID, r.Venue)
	if r.AnyVenue {
		// A request to keystile itself (POST /-/kill) names no venue.
		killed = st.all || st.tokens[t.ID]
	}
	if killed {
		return nil, &token.RefusedError{ID: t.ID, Err: token.ErrKilled}
	}
	return t, nil
}

var _ Verifier = (*Guard)(nil)
