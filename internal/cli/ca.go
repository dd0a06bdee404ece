package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/localca"
)

func newCA(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage keystile's local CA (forward proxy and gateway TLS certificates)",
		Long: `keystile's local certificate authority issues the certificates of the forward proxy (HTTPS_PROXY
mode) and, with gateway.tls.local_ca, of the gateway. Its private key is sealed in the vault; its
certificate is public: give it to your bots (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE).

Each command talks to the running server when there is one, and opens the vault itself otherwise.`,
	}
	cmd.AddCommand(newCAInit(g), newCARotate(g), newCAExport(g), newCAShow(g))
	return cmd
}

// withCA runs online against a running server, or offline with the vault
// opened here when no server runs.
func (g *globals) withCA(ctx context.Context, online func(*admin.Client) (localca.Info, error),
	offline func(env app.Env, dir string, cfg *config.Config) (localca.Info, error)) (localca.Info, error) {
	c, err := g.client()
	if err == nil {
		info, err := online(c)
		if !errors.Is(err, admin.ErrNotRunning) {
			return info, err
		}
	} else if !errors.Is(err, admin.ErrNotRunning) {
		return localca.Info{}, err
	}
	cfg, dir, err := g.resolve()
	if err != nil {
		return localca.Info{}, err
	}
	if err := app.CheckDataDirFor(dir, cfg); err != nil {
		return localca.Info{}, err
	}
	return offline(g.env(), dir, cfg)
}

type caCreateFlags struct {
	constrain bool
	validity  time.Duration
	jsonOut   bool
}

func (f *caCreateFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.constrain, "constrain", false, "name-constrain the CA to the configured venues' hosts and the gateway's TLS names")
	cmd.Flags().DurationVar(&f.validity, "validity", 0, "the CA's lifetime (default 43800h, 5 years)")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print the result as JSON")
}

func (g *globals) createCA(cmd *cobra.Command, f caCreateFlags, rotate bool) error {
	ctx := cmd.Context()
	req := admin.CARequest{Constrain: f.constrain, Validity: f.validity}
	info, err := g.withCA(ctx, func(c *admin.Client) (localca.Info, error) {
		if rotate {
			return c.RotateCA(ctx, req)
		}
		return c.InitCA(ctx, req)
	}, func(env app.Env, dir string, cfg *config.Config) (localca.Info, error) {
		return app.CreateCA(ctx, env, dir, cfg, app.CAOptions{Constrain: f.constrain, Validity: f.validity, Replace: rotate})
	})
	if err != nil {
		return err
	}
	if f.jsonOut {
		return g.printJSON(info)
	}
	verb := "Created"
	if rotate {
		verb = "Rotated to"
	}
	fmt.Fprintf(g.io.Stdout, "%s a new local CA: %s\n", verb, info.Subject)
	printCAInfo(g, info)
	fmt.Fprintln(g.io.Stdout, "Give bots the new certificate: keystile ca export > keystile-ca.pem")
	return nil
}

func newCAInit(g *globals) *cobra.Command {
	var f caCreateFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the local CA (keystile init already does; for older data dirs)",
		Long: `init creates the local CA of a data dir that has none (keystile init creates one, and serve creates
one when proxy.listen or gateway.tls.local_ca needs it). It refuses to replace an existing CA: see rotate.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.createCA(cmd, f, false) },
	}
	f.register(cmd)
	return cmd
}

func newCARotate(g *globals) *cobra.Command {
	var f caCreateFlags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the local CA with a new key and certificate",
		Long: `rotate replaces the local CA (a new key in the vault, a new certificate) and drops every certificate
it issued: bots must trust the new certificate (keystile ca export) from then on. A running server
switches at once. After a suspected key compromise, run
  keystile secret revoke keystile-local-ca --compromised && keystile ca rotate
so the old key is destroyed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.createCA(cmd, f, true) },
	}
	f.register(cmd)
	return cmd
}

func (g *globals) readCA(ctx context.Context) (localca.Info, error) {
	return g.withCA(ctx, func(c *admin.Client) (localca.Info, error) { return c.CA(ctx) },
		func(env app.Env, dir string, cfg *config.Config) (localca.Info, error) {
			return app.ReadCA(ctx, env, dir, cfg)
		})
}

func newCAExport(g *globals) *cobra.Command {
	var out string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print the local CA's certificate (PEM) for bots to trust",
		Long: `export prints the local CA's certificate, checked against the key in the vault, for
NODE_EXTRA_CA_CERTS (Node), SSL_CERT_FILE (Go, OpenSSL), REQUESTS_CA_BUNDLE (Python requests):

  keystile ca export > keystile-ca.pem
  HTTPS_PROXY=http://keystile:kst_...@127.0.0.1:7879 REQUESTS_CA_BUNDLE=keystile-ca.pem python bot.py

The certificate is public; the key never leaves the vault.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := g.readCA(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(info)
			}
			if out != "" {
				// The certificate is public: readable by the bots' users.
				return os.WriteFile(out, []byte(info.PEM), 0o644) // #nosec G306 -- a public CA certificate
			}
			_, err = fmt.Fprint(g.io.Stdout, info.PEM)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the PEM to this file instead of stdout")
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func newCAShow(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "show [--json]",
		Short: "Describe the local CA (subject, fingerprint, validity, name constraints)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := g.readCA(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(info)
			}
			fmt.Fprintf(g.io.Stdout, "Local CA: %s\n", info.Subject)
			printCAInfo(g, info)
			return nil
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func printCAInfo(g *globals, info localca.Info) {
	w := g.io.Stdout
	fmt.Fprintf(w, "  sha256:      %s\n", info.SHA256)
	fmt.Fprintf(w, "  valid:       %s to %s\n", info.NotBefore.Format(time.RFC3339), info.NotAfter.Format(time.RFC3339))
	c := "none (trust it per bot process, not system-wide)"
	if len(info.Constraints) > 0 {
		c = strings.Join(info.Constraints, ", ")
	}
	fmt.Fprintf(w, "  constraints: %s\n", c)
	fmt.Fprintf(w, "  certificate: %s\n", info.CertFile)
	fmt.Fprintf(w, "  key:         vault credential %s (version %d)\n", localca.CredentialName, info.KeyVersion)
}
