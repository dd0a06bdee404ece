package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
)

func newOAuth(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "oauth", Short: "OAuth 2.0 venues"}
	var port int
	var timeout time.Duration
	var jsonOut bool
	login := &cobra.Command{
		Use:   "login VENUE",
		Short: "Run the authorization-code flow (PKCE, loopback redirect) and store the refresh token",
		Long: `oauth login asks the running server to run the OAuth 2.0 authorization-code flow with PKCE for
VENUE (auth.oauth2.auth_url/token_url in keystile.yaml; client_id and client_secret in its vault
credential). Open the printed URL in a browser on this machine; the redirect comes back to
127.0.0.1, the state is checked, the code exchanged, and the refresh token stored in the vault.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s: want one VENUE", cmd.CommandPath())
			}
			return nil
		},
		ValidArgsFunction: g.complete(venueNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ev, err := c.OAuthLogin(cmd.Context(), args[0], admin.OAuthLoginRequest{Port: port, Timeout: timeout}, func(u string) {
				fmt.Fprintf(g.io.Stderr, "Open this URL in a browser on this machine to authorise keystile:\n\n  %s\n\nWaiting for the redirect...\n", u)
			})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(struct {
					Venue      string `json:"venue"`
					Credential string `json:"credential"`
					Version    int    `json:"version"`
				}{args[0], ev.Credential, ev.Version})
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Stored the refresh token in credential %s (version %d)\n", ev.Credential, ev.Version)
			return err
		},
	}
	login.Flags().IntVar(&port, "port", 0, "loopback redirect port (0: any free port; fix it if the provider needs an exact redirect URI)")
	login.Flags().DurationVar(&timeout, "timeout", 4*time.Minute, "how long to wait for the browser (at most 4m)")
	jsonFlag(login, &jsonOut)
	cmd.AddCommand(login)
	return cmd
}
