package cli

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/token"
)

// mintFlags are the attributes of a token to mint. `token create` and
// `exec` take the same flags, registered and checked here.
type mintFlags struct {
	venues []string
	scopes []string
	cidrs  []string
	policy string
	test   bool
	ttl    time.Duration
}

// register adds --venue, --scope, --cidr, --policy, --test and --ttl.
func (m *mintFlags) register(fl *pflag.FlagSet, venueUsage string, ttl time.Duration, ttlUsage string) {
	fl.StringArrayVar(&m.venues, "venue", nil, venueUsage)
	fl.StringArrayVar(&m.scopes, "scope", nil, "operation pattern allowed, e.g. order.* (repeatable; default market.read, account.read, order.*)")
	fl.StringArrayVar(&m.cidrs, "cidr", nil, "source address or CIDR allowed (repeatable; default any)")
	fl.StringVar(&m.policy, "policy", "", "policy name (must be in the server's config)")
	fl.BoolVar(&m.test, "test", false, "mint a kst_test_ token (test/demo/sandbox endpoints only)")
	fl.DurationVar(&m.ttl, "ttl", ttl, ttlUsage)
}

// complete registers the completion of --venue with the running server's
// venues.
func (m *mintFlags) complete(g *globals, cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("venue", g.completeFlag(venueNames)) // #nosec G104 -- the flag is registered above
}

// check validates what can be checked without the server: the syntax of
// scopes and CIDRs and the sign of the TTL (flag is the command's name for
// messages). The server checks venues, the policy and the TTL's maximum.
func (m mintFlags) check(cmd string) error {
	if m.ttl < 0 {
		return usagef("%s: --ttl must not be negative", cmd)
	}
	for _, s := range m.scopes {
		if err := token.ValidateScope(s); err != nil {
			return usagef("%s: --scope: %v", cmd, err)
		}
	}
	for _, c := range m.cidrs {
		if _, err := admin.ParseCIDR(c); err != nil {
			return usagef("%s: --cidr: %v", cmd, err)
		}
	}
	return nil
}

// request is the admin API request minting the token.
func (m mintFlags) request(name string, venues []string) admin.CreateTokenRequest {
	return admin.CreateTokenRequest{Name: name, Policy: m.policy, Venues: venues, Scopes: m.scopes, Test: m.test,
		CIDRs: m.cidrs, TTL: m.ttl}
}
