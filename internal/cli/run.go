package cli

import (
	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/demo"
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
