package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/mfa"
)

// tokenRef resolves what a user typed for a token, its public id (tok_...)
// or its name, to the id. A name several tokens share is narrowed to the
// ones still usable (active, in rotation grace or frozen); if that does not
// leave exactly one, the name is refused with the ids to choose from.
func tokenRef(ctx context.Context, c *admin.Client, ref string) (string, error) {
	l, err := c.ListTokens(ctx)
	if err != nil {
		return "", err
	}
	var named []admin.TokenInfo
	for _, t := range l {
		if t.ID == ref {
			return t.ID, nil
		}
		if t.Name == ref {
			named = append(named, t)
		}
	}
	switch len(named) {
	case 0:
		return "", fmt.Errorf("no token with id or name %q (see keystile token list)", ref)
	case 1:
		return named[0].ID, nil
	}
	var usable []admin.TokenInfo
	for _, t := range named {
		if t.State == "active" || t.State == "grace" || t.State == "frozen" {
			usable = append(usable, t)
		}
	}
	if len(usable) == 1 {
		return usable[0].ID, nil
	}
	if len(usable) > 1 {
		named = usable
	}
	ids := make([]string, 0, len(named))
	for _, t := range named {
		ids = append(ids, fmt.Sprintf("%s (%s, created %s)", t.ID, t.State, t.CreatedAt.Format(time.RFC3339)))
	}
	return "", usagef("%d tokens are named %q; pass one of their ids: %s", len(named), ref, strings.Join(ids, ", "))
}

// completionTimeout bounds the admin calls behind shell completion: a
// slow or absent server must not hang the shell.
const completionTimeout = 2 * time.Second

// complete returns a cobra completion function listing what names() gets
// from the running server; when the server is down or slow it completes
// nothing (and prints nothing).
func (g *globals) complete(names func(ctx context.Context, c *admin.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return g.completeNames(cmd, names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFlag is complete for a flag's value (repeatable flags complete
// every time).
func (g *globals) completeFlag(names func(ctx context.Context, c *admin.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return g.completeNames(cmd, names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func (g *globals) completeNames(cmd *cobra.Command, names func(ctx context.Context, c *admin.Client) ([]string, error), prefix string) []cobra.Completion {
	c, err := g.client()
	if err != nil {
		return nil
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	l, err := names(ctx, c)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, n := range l {
		if strings.HasPrefix(n, prefix) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// tokenNames lists token ids and the names of the tokens still usable.
func tokenNames(ctx context.Context, c *admin.Client) ([]string, error) {
	l, err := c.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range l {
		out = append(out, t.ID)
		if t.Name != "" && (t.State == "active" || t.State == "grace" || t.State == "frozen") {
			out = append(out, t.Name)
		}
	}
	return out, nil
}

// secretNames lists the credentials' names, without keystile's own
// (the local CA's key, the admin second factor), which the secret
// commands are not for.
func secretNames(ctx context.Context, c *admin.Client) ([]string, error) {
	l, err := c.ListSecrets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(l))
	for _, i := range l {
		if strings.HasPrefix(i.Name, mfa.ReservedPrefix) || i.Name == localca.CredentialName {
			continue
		}
		out = append(out, i.Name)
	}
	return out, nil
}

// venueNames lists the venues the server runs.
func venueNames(ctx context.Context, c *admin.Client) ([]string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(st.Venues))
	for _, v := range st.Venues {
		out = append(out, v.ID)
	}
	return out, nil
}
