package app

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/token"
)

// policyTokens is the token service as the admin API sees it: a new token
// may only name a policy and venues the loaded configuration has (a typo
// would otherwise mint a token every request of which is refused).
type policyTokens struct {
	*token.Service
	engine *policy.Engine
	cfg    func() *config.Config // the configuration in force; nil skips the venue check
}

// Create implements admin.Tokens.
func (p policyTokens) Create(ctx context.Context, req token.CreateRequest) (secret.Value, *token.Token, error) {
	if p.cfg != nil {
		if err := checkVenues(p.cfg(), req.Venues); err != nil {
			return secret.Value{}, nil, err
		}
	}
	if req.Policy != "" {
		names := p.engine.Set().Names()
		if !slices.Contains(names, req.Policy) {
			known := "none"
			if len(names) > 0 {
				known = strings.Join(names, ", ")
			}
			return secret.Value{}, nil, fmt.Errorf("%w: no policy %q in the configuration (policies: %s)", token.ErrInvalid, req.Policy, known)
		}
	}
	return p.Service.Create(ctx, req)
}
