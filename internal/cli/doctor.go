package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/doctor"
	"github.com/keystile/keystile/internal/masterkey"
	"github.com/keystile/keystile/internal/vault"
)

// metaMasterKey is the vault metadata key under which init records the
// master-key source (app keeps its own copy of the name unexported).
const metaMasterKey = "master_key"

func newDoctor(g *globals) *cobra.Command {
	var failOn string
	var out *formatFlags
	cmd := &cobra.Command{
		Use:   "doctor [--json] [--fail-on warn|fail]",
		Short: "Check this machine's keystile set-up against the security checklist",
		Long: `doctor checks permissions, the master-key source, .env files and shell histories, the config's
venues, tokens, credential rotation and the running server. Each check has an id, a severity, a result
(pass, warn, fail, skip) and a fix hint. Nothing is changed and no secret is printed.
Exit status 1 when a check is at or above --fail-on (default fail).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := doctor.ParseLevel(failOn)
			if err != nil {
				return usagef("%v", err)
			}
			format, err := out.value(cmd)
			if err != nil {
				return err
			}
			cfg, dir, err := g.resolve()
			if err != nil {
				return err
			}
			o, cleanup := g.doctorOptions(cmd.Context(), cfg, dir)
			defer cleanup()
			rep := doctor.Run(cmd.Context(), o)
			if format == "json" {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else if err := rep.WriteText(g.io.Stdout); err != nil {
				return err
			}
			if n := len(rep.Failing(level)); n > 0 {
				return fmt.Errorf("doctor: %d check(s) at or above %s", n, level)
			}
			return nil
		},
	}
	out = newFormatFlags(cmd, "text", "text", "json")
	cmd.Flags().StringVar(&failOn, "fail-on", "fail", "exit 1 when a check is at or above: warn or fail")
	return cmd
}

// doctorOptions gathers what doctor looks at: the running server if any,
// and the vault opened standalone (never prompting).
func (g *globals) doctorOptions(ctx context.Context, cfg *config.Config, dir string) (doctor.Options, func()) {
	o := doctor.Options{DataDir: dir, Config: cfg, Home: g.io.Getenv("HOME"), UID: os.Getuid()}
	if wd, err := os.Getwd(); err == nil {
		o.WorkDir = wd
	}
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	sock := cfg.Admin.Socket
	if sock == "" {
		sock = filepath.Join(dir, app.SocketFile)
	}
	if c, err := admin.NewClient(sock); err != nil {
		o.ServerReason = err.Error()
	} else {
		o.Server = timeoutServer{c}
	}
	var params masterkey.Params
	params, o.VaultReason = recordedParams(ctx, g.env(), cfg, dir)
	o.MasterKeySource = params.Source
	if params.Source == masterkey.SourceFile {
		// The key file actually in use, as serve resolves it.
		if kf, err := app.ResolveKeyFile(dir, cfg.MasterKey.File, params.KeyFile); err != nil {
			o.KeyFileProblem = err.Error()
		} else {
			o.KeyFile = kf
		}
	}
	if o.VaultReason == "" {
		env := app.Env{Getenv: g.io.Getenv, Stderr: g.io.Stderr} // no Prompt: doctor never asks
		db, v, err := app.OpenVault(ctx, env, dir, cfg, nil, nil)
		if err != nil {
			o.VaultReason = "cannot open the vault without a prompt: " + err.Error()
		} else {
			o.Vault = v
			cleanups = append(cleanups, func() { _ = db.Close() }, func() { _ = v.Close(context.WithoutCancel(ctx)) })
		}
	}
	o.AuditVerify, o.AuditReason = auditVerifier(cfg, dir, o.Vault)
	return o, cleanup
}

// auditVerifier returns doctor's audit check: the stored log verified
// with the public key derived from the vault.
func auditVerifier(cfg *config.Config, dir string, v doctor.Vault) (func(context.Context) (audit.Report, error), string) {
	vv, ok := v.(*vault.Vault)
	if !ok || vv == nil {
		return nil, "the vault is not open, so the checkpoint key is unknown (run `keystile audit verify`)"
	}
	sink, path, err := app.AuditSink(cfg, dir)
	if err != nil {
		return nil, err.Error()
	}
	if sink == app.AuditSinkStdout {
		return nil, "audit.sink is stdout: there is no stored log to verify"
	}
	if !app.AuditLogStored(context.Background(), cfg, dir) {
		return nil, "no audit log yet at " + path
	}
	return func(ctx context.Context) (audit.Report, error) {
		keys, err := app.AuditKeys(ctx, vv)
		if err != nil {
			return audit.Report{}, err
		}
		r, err := app.OpenAuditReader(ctx, cfg, dir)
		if err != nil {
			return audit.Report{}, err
		}
		defer r.Close()
		return audit.Verify(ctx, r, keys.PublicKey())
	}, ""
}

// recordedParams reads the master-key parameters init recorded in the
// vault (source, key file).
func recordedParams(ctx context.Context, env app.Env, cfg *config.Config, dir string) (masterkey.Params, string) {
	if err := app.CheckDataDirFor(dir, cfg); err != nil {
		return masterkey.Params{}, err.Error()
	}
	db, err := app.OpenStores(ctx, env, cfg, dir, app.StoreOptions{})
	if err != nil {
		return masterkey.Params{}, err.Error()
	}
	defer db.Close()
	b, err := db.Vault().Meta(ctx, metaMasterKey)
	if err != nil {
		return masterkey.Params{}, "vault metadata: " + err.Error()
	}
	var p masterkey.Params
	if err := json.Unmarshal(b, &p); err != nil {
		return masterkey.Params{}, "vault metadata: " + err.Error()
	}
	return p, ""
}

// timeoutServer bounds each admin call doctor makes.
type timeoutServer struct{ c *admin.Client }

func (s timeoutServer) Status(ctx context.Context) (admin.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.c.Status(ctx)
}

func (s timeoutServer) ListTokens(ctx context.Context) ([]admin.TokenInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.c.ListTokens(ctx)
}

func (s timeoutServer) ListSecrets(ctx context.Context) ([]vault.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.c.ListSecrets(ctx)
}

var _ doctor.Server = timeoutServer{}
