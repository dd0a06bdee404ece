package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
)

func newVersion(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the keystile version and build information",
		Long: `version prints keystile's version, the VCS revision, commit time and dirty flag the go command
stamped into the binary (when built from a checkout), the Go version and the target platform.
keystile --version prints the same one line.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := app.Build()
			if jsonOut {
				return g.printJSON(b)
			}
			_, err := fmt.Fprintln(g.io.Stdout, b.Short())
			return err
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the build information as JSON")
	return cmd
}

// setVersionFlag makes `keystile --version` print the version line.
func setVersionFlag(root *cobra.Command) {
	root.Version = app.Build().Short()
	root.SetVersionTemplate("{{.Version}}\n")
}
