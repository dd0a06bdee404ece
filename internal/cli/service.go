package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/service"
)

type serviceFlags struct {
	user, group, binary string
}

func (f *serviceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.user, "user", service.DefaultUser, "system user the server runs as (created by install if missing)")
	cmd.Flags().StringVar(&f.group, "group", "", "group of the server and of the gateway's unix socket (default: the user's primary group)")
	cmd.Flags().StringVar(&f.binary, "binary", "", "absolute path of the keystile binary (default: this one)")
}

func (f *serviceFlags) params() (service.Params, error) {
	bin := f.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return service.Params{}, fmt.Errorf("service: cannot find this binary (%v): pass --binary", err)
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return service.Params{}, fmt.Errorf("service: %v: pass --binary", err)
		}
	}
	return service.Params{Binary: bin, User: f.user, Group: f.group}, nil
}

// serviceErr makes invalid parameters usage errors.
func serviceErr(err error) error {
	if errors.Is(err, service.ErrInput) {
		return usageError{err}
	}
	return err
}

func newService(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Run keystile as a hardened systemd service"}

	var uf serviceFlags
	var unitJSON bool
	unit := &cobra.Command{
		Use:   "unit",
		Short: "Print the systemd unit (with this binary's path)",
		Long: `unit prints keystile.service: the server as the dedicated system user (--user, default keystile),
state in /var/lib/keystile (StateDirectory), and the sandboxing directives (ProtectSystem=strict,
ProtectHome, PrivateTmp, PrivateDevices, NoNewPrivileges, MemoryDenyWriteExecute, no
capabilities, @system-service system calls, AF_UNIX/AF_INET/AF_INET6 only, UMask 0077, no core
dumps). systemctl reload sends SIGHUP: serve reloads its policies.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := uf.params()
			if err != nil {
				return err
			}
			u, err := service.Unit(p)
			if err != nil {
				return serviceErr(err)
			}
			if unitJSON {
				return g.printJSON(struct {
					Path string `json:"path"`
					Unit string `json:"unit"`
				}{service.UnitPath, u})
			}
			_, err = fmt.Fprint(g.io.Stdout, u)
			return err
		},
	}
	uf.register(unit)
	jsonFlag(unit, &unitJSON)

	var inf serviceFlags
	var dryRun, force, installJSON bool
	install := &cobra.Command{
		Use:   "install",
		Short: "Install the systemd unit, the system user and the data dir (as root)",
		Long: `install creates the system user if it does not exist (useradd --system, its own group, no
login shell, home /var/lib/keystile), creates /var/lib/keystile (0700, owned by it), writes
/etc/systemd/system/keystile.service and runs systemctl daemon-reload; then it prints the next
commands (init as the service user, enable, status). It neither initialises nor starts keystile.
A unit file that differs from this one is kept unless --force. --dry-run only prints the steps.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := inf.params()
			if err != nil {
				return err
			}
			if !dryRun && os.Geteuid() != 0 {
				return fmt.Errorf("service install writes %s and may create a user: run it as root (sudo), or add --dry-run", service.UnitPath)
			}
			var steps strings.Builder
			in := service.Installer{DryRun: dryRun, Force: force, Out: g.io.Stdout}
			if installJSON {
				in.Out = &steps
			}
			if err := in.Install(p); err != nil {
				return serviceErr(err)
			}
			if installJSON {
				return g.printJSON(struct {
					DryRun bool     `json:"dry_run"`
					Steps  []string `json:"steps"`
					Next   []string `json:"next"`
				}{dryRun, strings.Split(strings.TrimSuffix(steps.String(), "\n"), "\n"), service.Next(p.Binary, p.User)})
			}
			if dryRun {
				fmt.Fprintln(g.io.Stdout, "(dry run: nothing was changed)")
			}
			fmt.Fprintln(g.io.Stdout, "Next:")
			for _, l := range service.Next(p.Binary, p.User) {
				fmt.Fprintln(g.io.Stdout, "  "+l)
			}
			return nil
		},
	}
	inf.register(install)
	install.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be done, change nothing")
	install.Flags().BoolVar(&force, "force", false, "overwrite a keystile.service that differs")
	jsonFlag(install, &installJSON)

	cmd.AddCommand(unit, install)
	return cmd
}
