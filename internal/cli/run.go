package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/demo"
	"github.com/keystile/keystile/internal/sandbox"
)

func newDemo(g *globals) *cobra.Command {
	var keep string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run keystile end to end against local venue emulators (no network needed)",
		Long: `demo starts emulators of Stake, DMarket, Betfair, STAPI, a generic HMAC venue, Binance, Kraken,
OKX, Bybit and Coinbase on loopback (TLS with a throwaway CA), a keystile server on a temporary data
dir, stores the emulators' credentials in the vault, mints a token, and runs a scripted bot that
reads balances and places orders through the gateway; then it revokes the token, shows the next
request refused, and checks that no credential reached the data dir.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := demo.Options{Out: g.io.Stdout, DataDir: keep}
			if verbose {
				o.Log = g.io.Stderr
			}
			_, err := demo.Run(cmd.Context(), o)
			return err
		},
	}
	cmd.Flags().StringVar(&keep, "keep-data-dir", "", "use this (new) data dir and keep it afterwards")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show keystile's own logs on stderr")
	return cmd
}

func newSandbox(g *globals) *cobra.Command {
	var venues, listen, credsFile string
	var useTLS bool
	cmd := &cobra.Command{
		Use:   "sandbox [--venues LIST] [--listen HOST] [--tls] [--credentials FILE]",
		Short: "Run the venue emulators on loopback until interrupted",
		Long: `sandbox runs emulators of each supported venue. Each verifies the venue's authentication as the
venue documents it, answers with its error shapes, counts orders and injects faults on request
(POST /-/sandbox/faults). It prints one JSON line with each venue's base URL and the throwaway
credentials it accepts, then serves until SIGINT/SIGTERM.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := sandbox.Options{TLS: useTLS, ListenHost: listen}
			if venues != "" {
				for _, v := range strings.Split(venues, ",") {
					if v = strings.TrimSpace(v); v != "" {
						o.Venues = append(o.Venues, v)
					}
				}
			}
			if credsFile != "" {
				f, err := os.Open(credsFile) // #nosec G304 -- operator's file
				if err != nil {
					return err
				}
				o.Credentials, err = sandbox.ReadCredentials(f)
				_ = f.Close()
				if err != nil {
					return err
				}
			}
			s, err := sandbox.Start(cmd.Context(), o)
			if err != nil {
				if errors.Is(err, sandbox.ErrUnknownVenue) {
					return usagef("%v (known: %s)", err, strings.Join(sandbox.AllVenues(), ", "))
				}
				return err
			}
			defer s.Close()
			if err := s.WriteInfo(g.io.Stdout); err != nil {
				return err
			}
			fmt.Fprintln(g.io.Stderr, "keystile sandbox: serving; Ctrl-C to stop")
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&venues, "venues", "", "comma-separated venues (default all: "+strings.Join(sandbox.AllVenues(), ",")+")")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1", "host to listen on (ports are ephemeral)")
	cmd.Flags().BoolVar(&useTLS, "tls", false, "serve HTTPS with a throwaway CA (its PEM is in the JSON line)")
	cmd.Flags().StringVar(&credsFile, "credentials", "", "JSON file fixing the credentials per venue")
	return cmd
}
