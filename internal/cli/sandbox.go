package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/sandbox/sandboxconf"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// DefaultSandboxPortBase is the port base `sandbox --configure` uses when
// --port-base is not given: configured venues need ports that do not
// change between runs (7880-7889, next to the gateway's 7878).
const DefaultSandboxPortBase = 7880

type sandboxFlags struct {
	venues, listen, credsFile string
	portBase                  int
	useTLS, configure, force  bool
	json                      bool
}

func newSandbox(g *globals) *cobra.Command {
	var f sandboxFlags
	cmd := &cobra.Command{
		Use:   "sandbox [--venues LIST] [--port-base N] [--configure [--force]] [--listen HOST] [--tls] [--credentials FILE] [--json]",
		Short: "Run the venue emulators on loopback until interrupted (and configure keystile for them)",
		Long: `sandbox runs emulators of each supported venue. Each verifies the venue's authentication as the
venue documents it, answers with its error shapes, counts orders and injects faults on request
(POST /-/sandbox/faults). It prints each venue's base URL (with --json: one JSON line with the base
URLs and the throwaway credentials it accepts), then serves until SIGINT/SIGTERM.

--port-base N fixes the ports: each venue listens on N plus its place in this order: stake +0,
dmarket +1, betfair +2, stapi +3, generic +4, binance +5, kraken +6, okx +7, bybit +8, coinbase +9
(also with --venues). A port something else holds is an error naming the venue and the port.

--configure makes the emulators usable through keystile in one command: it adds one venue per
emulator (id = the emulator's name, sandbox: true, so only kst_test_ tokens reach it) to the
venues block of the config file (the file the running server reloads, else --config or
<data-dir>/keystile.yaml), keeping the rest of the file as it is, and stores the emulators'
credentials in the vault as sandbox-<venue> (through the running server, or directly in the
vault when it is stopped). A venue id already configured with other settings is refused unless
--force. Without --port-base it uses --port-base 7880. Plain HTTP only (not with --tls).`,
		Example: `  keystile sandbox --configure --venues binance,kraken
  keystile token create --name try --venue binance --test
  curl -H "Authorization: Bearer kst_test_..." http://127.0.0.1:7878/binance/api/v3/account`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.runSandbox(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.venues, "venues", "", "comma-separated venues (default all: "+strings.Join(sandbox.AllVenues(), ",")+")")
	fl.StringVar(&f.listen, "listen", "127.0.0.1", "host to listen on")
	fl.IntVar(&f.portBase, "port-base", 0, fmt.Sprintf("fixed ports: venue i of the documented order on N+i (default: ephemeral; %d with --configure)", DefaultSandboxPortBase))
	fl.BoolVar(&f.useTLS, "tls", false, "serve HTTPS with a throwaway CA (its PEM is in the JSON)")
	fl.StringVar(&f.credsFile, "credentials", "", "JSON file fixing the credentials per venue ({\"binance\":{\"api_key\":...}})")
	fl.BoolVar(&f.configure, "configure", false, "add the venues to the config file and their credentials to the vault")
	fl.BoolVar(&f.force, "force", false, "with --configure: replace venues of the same id configured otherwise")
	jsonFlag(cmd, &f.json)
	return cmd
}

func (g *globals) runSandbox(cmd *cobra.Command, f sandboxFlags) error {
	ctx := cmd.Context()
	o := sandbox.Options{TLS: f.useTLS, ListenHost: f.listen, PortBase: f.portBase}
	for _, v := range strings.Split(f.venues, ",") {
		if v = strings.TrimSpace(v); v != "" {
			o.Venues = append(o.Venues, v)
		}
	}
	if f.force && !f.configure {
		return usagef("sandbox: --force goes with --configure")
	}
	if f.configure {
		if f.useTLS {
			return usagef("sandbox: --configure writes plain-HTTP loopback venues; --tls makes a new CA every run, which a configuration would not survive")
		}
		if !cmd.Flags().Changed("port-base") {
			o.PortBase = DefaultSandboxPortBase
		}
	}
	if o.PortBase < 0 || o.PortBase > sandbox.MaxPortBase() {
		return usagef("sandbox: --port-base must be 1-%d (or 0 for ephemeral ports), not %d", sandbox.MaxPortBase(), o.PortBase)
	}
	if f.credsFile != "" {
		fh, err := os.Open(f.credsFile) // #nosec G304 -- operator's file
		if err != nil {
			return fmt.Errorf("sandbox: credentials: %w", err)
		}
		o.Credentials, err = sandbox.ReadCredentials(fh)
		_ = fh.Close()
		if err != nil {
			return err
		}
	}
	s, err := sandbox.Start(ctx, o)
	if err != nil {
		if errors.Is(err, sandbox.ErrUnknownVenue) {
			return usagef("%v (known: %s)", err, strings.Join(sandbox.AllVenues(), ", "))
		}
		if errors.Is(err, sandbox.ErrPortInUse) {
			return fmt.Errorf("%w; pick another --port-base or stop what listens there", err)
		}
		return err
	}
	defer s.Close()
	if f.json {
		if err := s.WriteInfo(g.io.Stdout); err != nil {
			return err
		}
	} else if err := printSandbox(g, s.Info()); err != nil {
		return err
	}
	if f.configure {
		if err := g.configureSandbox(ctx, s.Info(), f); err != nil {
			return err
		}
	}
	fmt.Fprintln(g.io.Stderr, "keystile sandbox: serving; Ctrl-C to stop")
	<-ctx.Done()
	return nil
}

func printSandbox(g *globals, info sandbox.Info) error {
	tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VENUE\tBASE URL\tCREDENTIAL FIELDS")
	for _, name := range sandbox.AllVenues() {
		vi, ok := info.Venues[name]
		if !ok {
			continue
		}
		var fields []string
		for k := range vi.Credentials {
			fields = append(fields, k)
		}
		slices.Sort(fields)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, vi.BaseURL, strings.Join(fields, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(g.io.Stdout, "(the throwaway credentials are in `keystile sandbox --json`)")
	return err
}

// configureSandbox writes the sandbox venues into the config file and their
// credentials into the vault.
func (g *globals) configureSandbox(ctx context.Context, info sandbox.Info, f sandboxFlags) error {
	cfg, dir, err := g.resolve()
	if err != nil {
		return err
	}
	if err := app.CheckDataDirFor(dir, cfg); err != nil {
		return fmt.Errorf("sandbox --configure: no keystile data dir at %s (run keystile init first)", dir)
	}
	venues, err := sandboxconf.Venues(info)
	if err != nil {
		return err
	}
	// The running server, if any: its config file is the one to change.
	var srv *admin.Client
	var st admin.Status
	if c, err := g.client(); err == nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err = c.Status(sctx)
		cancel()
		if err == nil {
			srv = c
		} else if !errors.Is(err, admin.ErrNotRunning) {
			return err
		}
	} else if !errors.Is(err, admin.ErrNotRunning) {
		return err
	}
	target, err := g.sandboxConfigTarget(dir, srv != nil, st.Config)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(target) // #nosec G304 -- the config file
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sandbox --configure: %w", err)
	}
	merged, changes, err := sandboxconf.Merge(old, venues, f.force)
	if err != nil {
		if errors.Is(err, sandboxconf.ErrExists) {
			return usagef("sandbox --configure: %s: %v", target, err)
		}
		return fmt.Errorf("sandbox --configure: %s: %w", target, err)
	}
	// Check the new file as the server will read it, before anything is
	// stored or written.
	tmp, err := writeTemp(target, merged)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := config.Load(tmp); err != nil {
		return fmt.Errorf("sandbox --configure: the merged configuration is invalid: %w", err)
	}
	if err := g.storeSandboxCredentials(ctx, srv, dir, cfg, venues); err != nil {
		return err
	}
	if string(merged) != string(old) {
		if err := os.Rename(tmp, target); err != nil {
			return fmt.Errorf("sandbox --configure: %w", err)
		}
	}
	var added, same, replaced []string
	for _, c := range changes {
		switch c.Action {
		case sandboxconf.Added:
			added = append(added, c.ID)
		case sandboxconf.Replaced:
			replaced = append(replaced, c.ID)
		default:
			same = append(same, c.ID)
		}
	}
	w := g.io.Stderr
	fmt.Fprintf(w, "Configured %d sandbox venues in %s", len(venues), target)
	for _, p := range []struct {
		what string
		ids  []string
	}{{"added", added}, {"replaced", replaced}, {"already there", same}} {
		if len(p.ids) > 0 {
			fmt.Fprintf(w, "; %s: %s", p.what, strings.Join(p.ids, ", "))
		}
	}
	how := "directly in the vault (the server is not running)"
	if srv != nil {
		how = "through the running server"
	}
	fmt.Fprintf(w, "\nStored their credentials (%s%s...) %s.\n", sandboxconf.CredentialPrefix, venues[0].ID, how)
	if srv != nil {
		if st.Config == "" {
			fmt.Fprintln(w, "The server runs without a config file: restart it to serve these venues.")
		} else if !waitVenues(ctx, srv, venues) {
			fmt.Fprintln(w, "The server has not reloaded the venues yet: see keystile status (and its log).")
		}
	}
	fmt.Fprintf(w, "Next: keystile token create --name try --venue %s --test   (sandbox venues take kst_test_ tokens only)\n", venues[0].ID)
	return nil
}

// sandboxConfigTarget picks the config file to change: the running
// server's, else the one the command line names, else the data dir's.
func (g *globals) sandboxConfigTarget(dir string, online bool, serverFile string) (string, error) {
	explicit := g.cfgPath != "" || g.io.Getenv(app.EnvConfig) != ""
	if online && serverFile != "" {
		if explicit && g.cfgFile != "" && !sameFile(g.cfgFile, serverFile) {
			return "", usagef("sandbox --configure: the running server reads %s, not %s", serverFile, g.cfgFile)
		}
		return serverFile, nil
	}
	if g.cfgFile != "" {
		return g.cfgFile, nil
	}
	if explicit {
		p := g.cfgPath
		if p == "" {
			p = g.io.Getenv(app.EnvConfig)
		}
		return p, nil
	}
	return filepath.Join(dir, app.ConfigFile), nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// writeTemp writes data to a new 0600 file next to target.
func writeTemp(target string, data []byte) (string, error) {
	fh, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".*")
	if err != nil {
		return "", fmt.Errorf("sandbox --configure: %w", err)
	}
	name := fh.Name()
	_, werr := fh.Write(data)
	if werr == nil {
		werr = fh.Sync()
	}
	if cerr := fh.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("sandbox --configure: %w", werr)
	}
	return name, nil
}

// storeSandboxCredentials stores each venue's credential: through the
// server's admin API when it runs (as secret set does), else in the vault
// opened here.
func (g *globals) storeSandboxCredentials(ctx context.Context, srv *admin.Client, dir string, cfg *config.Config, venues []sandboxconf.Venue) error {
	if srv != nil {
		for _, v := range venues {
			fields := map[string][]byte{}
			for k, val := range v.Fields {
				fields[k] = []byte(val)
			}
			if _, err := srv.SetSecret(ctx, v.Credential, admin.SetSecretRequest{Fields: fields}); err != nil {
				return fmt.Errorf("sandbox --configure: store %s: %w", v.Credential, err)
			}
		}
		return nil
	}
	db, vlt, err := app.OpenVault(ctx, g.env(), dir, cfg, nil, nil)
	if err != nil {
		return fmt.Errorf("sandbox --configure: open the vault: %w", err)
	}
	defer db.Close()
	defer vlt.Close(context.WithoutCancel(ctx))
	for _, v := range venues {
		fields := map[string]secret.Value{}
		for k, val := range v.Fields {
			fields[k] = secret.FromString(val)
		}
		if _, err := vlt.Set(ctx, v.Credential, fields, vault.SetOptions{}); err != nil {
			return fmt.Errorf("sandbox --configure: store %s: %w", v.Credential, err)
		}
	}
	return nil
}

// waitVenues waits (up to 10 s) until the server serves every venue.
func waitVenues(ctx context.Context, c *admin.Client, venues []sandboxconf.Venue) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := c.Status(ctx)
		if err == nil && !slices.ContainsFunc(venues, func(v sandboxconf.Venue) bool {
			return !slices.ContainsFunc(st.Venues, func(s admin.VenueStatus) bool { return s.ID == v.ID && s.CredentialPresent })
		}) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
