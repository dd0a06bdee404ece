package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
)

func newToken(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint and manage the kst_ tokens bots use",
		Long: `token manages client tokens. A token is shown once, when it is created or rotated; keystile
keeps only its SHA-256 digest. Bots send it as "Authorization: Bearer kst_..." or "Keystile-Token: kst_...".`,
	}
	cmd.AddCommand(newTokenCreate(g), newTokenList(g), newTokenShow(g), newTokenRotate(g),
		newTokenAction(g, "revoke", "Revoke a token now (no grace)"),
		newTokenAction(g, "freeze", "Freeze a token until unfrozen"),
		newTokenAction(g, "unfreeze", "Unfreeze a frozen token"))
	return cmd
}

func idArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s: want one token ID (tok_...) or NAME, got %d arguments", cmd.CommandPath(), len(args))
	}
	if strings.HasPrefix(args[0], "kst_") {
		return usagef("pass the token's public ID (tok_..., see `keystile token list`) or its name, never the token itself")
	}
	return nil
}

// tokenClient connects to the server and resolves the token argument (an
// id or a name) to its id.
func (g *globals) tokenClient(cmd *cobra.Command, ref string) (*admin.Client, string, error) {
	c, err := g.client()
	if err != nil {
		return nil, "", err
	}
	id, err := tokenRef(cmd.Context(), c, ref)
	if err != nil {
		return nil, "", err
	}
	return c, id, nil
}

func printMinted(g *globals, m admin.MintedToken, jsonOut bool) error {
	if jsonOut {
		return g.printJSON(m)
	}
	fmt.Fprintf(g.io.Stdout, "%s\n", m.Token)
	fmt.Fprintf(g.io.Stderr, "Token %s (%s) for %s, expires %s. It is shown only once: store it in the bot's secret store.\n",
		m.Info.ID, m.Info.Name, strings.Join(m.Info.Venues, ","), m.Info.ExpiresAt.Format(time.RFC3339))
	return nil
}

func newTokenCreate(g *globals) *cobra.Command {
	var name string
	var m mintFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "create --name N --venue V [--scope S]... [--ttl D] [--cidr C]... [--test] [--policy P]",
		Short: "Mint a token (printed once on stdout)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || len(m.venues) == 0 {
				return usagef("--name and at least one --venue are required")
			}
			if err := m.check("token create"); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			minted, err := c.CreateToken(cmd.Context(), m.request(name, m.venues))
			if err != nil {
				return err
			}
			return printMinted(g, minted, jsonOut)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "a name for the bot (required)")
	m.register(f, "venue id the token may reach (repeatable; required)", 0, "lifetime (default tokens.default_ttl; at most tokens.max_ttl)")
	m.complete(g, cmd)
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newTokenList(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (metadata only)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				if l == nil {
					l = []admin.TokenInfo{}
				}
				return g.printJSON(l)
			}
			tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATE\tVENUES\tSCOPES\tTEST\tEXPIRES\tLAST USED")
			for _, t := range l {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\n", t.ID, t.Name, t.State, strings.Join(t.Venues, ","),
					strings.Join(t.Scopes, ","), t.Test, t.ExpiresAt.Format(time.RFC3339), age(t.LastUsedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func printTokenInfo(g *globals, t admin.TokenInfo) error {
	tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nname:\t%s\nstate:\t%s\nvenues:\t%s\nscopes:\t%s\ntest:\t%v\n", t.ID, t.Name, t.State,
		strings.Join(t.Venues, ", "), strings.Join(t.Scopes, ", "), t.Test)
	if len(t.CIDRs) > 0 {
		fmt.Fprintf(tw, "sources:\t%s\n", strings.Join(t.CIDRs, ", "))
	}
	if t.Policy != "" {
		fmt.Fprintf(tw, "policy:\t%s\n", t.Policy)
	}
	fmt.Fprintf(tw, "created:\t%s\nexpires:\t%s\nlast used:\t%s\n", t.CreatedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339), age(t.LastUsedAt))
	if !t.GraceUntil.IsZero() {
		fmt.Fprintf(tw, "valid until:\t%s (rotated to %s)\n", t.GraceUntil.Format(time.RFC3339), t.RotatedTo)
	}
	return tw.Flush()
}

func newTokenShow(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:               "show ID|NAME",
		Short:             "Show one token's metadata",
		Args:              idArg,
		ValidArgsFunction: g.complete(tokenNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := g.tokenClient(cmd, args[0])
			if err != nil {
				return err
			}
			t, err := c.ShowToken(cmd.Context(), id)
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(t)
			}
			return printTokenInfo(g, t)
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newTokenRotate(g *globals) *cobra.Command {
	var grace time.Duration
	var jsonOut bool
	cmd := &cobra.Command{
		Use:               "rotate ID|NAME [--grace D]",
		Short:             "Mint a successor token; the old one stays valid for the grace period",
		Args:              idArg,
		ValidArgsFunction: g.complete(tokenNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			if grace < 0 {
				return usagef("--grace must be >= 0")
			}
			c, id, err := g.tokenClient(cmd, args[0])
			if err != nil {
				return err
			}
			m, err := c.RotateToken(cmd.Context(), id, grace)
			if err != nil {
				return err
			}
			return printMinted(g, m, jsonOut)
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the old token stays valid")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newTokenAction(g *globals, action, short string) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:               action + " ID|NAME",
		Short:             short,
		Args:              idArg,
		ValidArgsFunction: g.complete(tokenNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := g.tokenClient(cmd, args[0])
			if err != nil {
				return err
			}
			t, err := c.TokenAction(cmd.Context(), id, action)
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(t)
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Token %s is now %s\n", t.ID, t.State)
			return err
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}
