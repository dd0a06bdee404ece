package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/masterkey"
	"github.com/keystile/keystile/internal/runexec"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/secretref"
	"github.com/keystile/keystile/internal/token"
)

// Variables exec sets for the child.
const (
	envURL   = "KEYSTILE_URL"
	envToken = "KEYSTILE_TOKEN" // #nosec G101 -- a variable name
)

type execFlags struct {
	tokenEnv     string
	tokenFromEnv string
	mint         mintFlags
	envs         []string
	keepEnv      []string
	// mintSet: a flag describing the token to mint was given; ttlSet:
	// --ttl was.
	mintSet, ttlSet bool
}

// defaultExecTTL is the minted token's lifetime without --ttl (shortened
// to tokens.max_ttl if that is shorter).
const defaultExecTTL = time.Hour

type injection struct {
	name string
	ref  secretref.Ref
}

func newExec(g *globals) *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [--venue V]... [--scope S]... [--cidr C]... [--test] [--policy P] [--ttl D] [--token-env NAME] [--env NAME=REF]... [--keep-env NAME]... -- CMD [ARGS]",
		Short: "Run a bot with a short-lived kst_ token and the gateway URL in its environment",
		Long: `exec runs CMD with KEYSTILE_URL (the gateway) and a kst_ token minted for this run in
KEYSTILE_TOKEN (or --token-env NAME); the token expires after --ttl and is revoked when CMD exits.
It is minted like ` + "`keystile token create`" + ` with the same --venue, --scope, --cidr, --policy and --test
flags (--test: a kst_test_ token, for sandbox and demo venues). --token-from-env VAR passes an existing
token instead.

Nothing from the vault reaches CMD by default, and neither do inherited variables that look like
credentials: KEYSTILE_MASTER_KEY and KEYSTILE_PASSPHRASE_FILE always; names with a _-separated part
containing KEY, SECRET, TOKEN, PASS, CRED, AUTH, PRIVATE or COOKIE (KEYSTILE, AUTHOR do not count), or
ending in _USERNAME, _CLIENT_ID, _CLIENT_CERT, _KEY_NAME; values starting with kst_ and URLs with a
password. Their names are listed on stderr; --keep-env NAME passes one anyway (repeatable).

For legacy bots that need a real secret, --env NAME=REF injects one; REF is env:VAR, file:PATH,
dotenv:PATH#KEY, keyring:SERVICE/USER or vault:CREDENTIAL#FIELD. Every injected value is then masked
in CMD's stdout and stderr, and the injection is recorded for ` + "`keystile doctor`" + `.
The exit status is CMD's.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("exec: want a command to run after --")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			f.ttlSet = fl.Changed("ttl")
			for _, n := range []string{"venue", "scope", "cidr", "policy", "test", "ttl"} {
				f.mintSet = f.mintSet || fl.Changed(n)
			}
			return g.runExec(cmd.Context(), f, args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.StringVar(&f.tokenEnv, "token-env", envToken, "variable that receives the token")
	fl.StringVar(&f.tokenFromEnv, "token-from-env", "", "pass the kst_ token held in this variable instead of minting one")
	f.mint.register(fl, "venue the minted token may reach (repeatable; default: every configured venue)",
		defaultExecTTL, "lifetime of the minted token (at most tokens.max_ttl)")
	f.mint.complete(g, cmd)
	fl.StringArrayVar(&f.envs, "env", nil, "inject a real secret: NAME=REF (repeatable; see above)")
	fl.StringArrayVar(&f.keepEnv, "keep-env", nil, "pass this inherited variable although it looks like a credential (repeatable)")
	return cmd
}

func (f execFlags) parse() ([]injection, error) {
	if !secretref.EnvName(f.tokenEnv) {
		return nil, usagef("exec: --token-env %q is not a variable name", f.tokenEnv)
	}
	if f.tokenFromEnv != "" && !secretref.EnvName(f.tokenFromEnv) {
		return nil, usagef("exec: --token-from-env %q is not a variable name", f.tokenFromEnv)
	}
	if f.tokenFromEnv != "" && f.mintSet {
		return nil, usagef("exec: --token-from-env passes an existing token; --venue, --scope, --cidr, --policy, --test and --ttl describe one to mint")
	}
	if f.mint.ttl <= 0 {
		return nil, usagef("exec: --ttl must be positive")
	}
	if err := f.mint.check("exec"); err != nil {
		return nil, err
	}
	var out []injection
	seen := map[string]bool{envURL: true, f.tokenEnv: true}
	for _, e := range f.envs {
		name, raw, ok := strings.Cut(e, "=")
		if !ok || !secretref.EnvName(name) {
			return nil, usagef("exec: --env wants NAME=REF, e.g. BINANCE_SECRET=vault:binance-main#secret")
		}
		if seen[name] || runexec.Stripped(name) {
			return nil, usagef("exec: --env %s: variable already set by exec or reserved", name)
		}
		seen[name] = true
		ref, err := secretref.Parse(raw)
		if err != nil {
			return nil, usagef("exec: --env %s: %v", name, err)
		}
		out = append(out, injection{name: name, ref: ref})
	}
	for _, name := range f.keepEnv {
		switch {
		case !secretref.EnvName(name):
			return nil, usagef("exec: --keep-env %q is not a variable name", name)
		case runexec.Stripped(name):
			return nil, usagef("exec: --keep-env %s: keystile's master-key variables are never passed", name)
		case seen[name]:
			return nil, usagef("exec: --keep-env %s: the variable is set by exec itself", name)
		}
	}
	return out, nil
}

func (g *globals) runExec(ctx context.Context, f execFlags, args []string) (err error) {
	injs, err := f.parse()
	if err != nil {
		return err
	}
	cfg, dir, err := g.resolve()
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return fmt.Errorf("exec: the gateway must be running: %w", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("exec: server status: %w", err)
	}
	if st.Gateway == "" {
		return errors.New("exec: the gateway listens on no TCP address (set gateway.listen)")
	}
	vars := []runexec.Var{{Name: envURL, Value: secret.FromString("http://" + st.Gateway)}}
	var masked []secret.Value
	defer func() {
		for _, v := range masked {
			v.Wipe()
		}
	}()

	// Resolve injected secrets first: a bad reference must not leave a
	// token behind.
	if len(injs) > 0 {
		vals, err := g.resolveRefs(ctx, cfg, dir, injs)
		if err != nil {
			return err
		}
		recs := make([]runexec.Injection, 0, len(injs))
		now := time.Now().UTC().Truncate(time.Second)
		for i, in := range injs {
			masked = append(masked, vals[i])
			vars = append(vars, runexec.Var{Name: in.name, Value: vals[i]})
			recs = append(recs, runexec.Injection{Var: in.name, Ref: in.ref.String(), Command: filepath.Base(args[0]), At: now})
		}
		for _, i := range runexec.Skipped(vals) {
			fmt.Fprintf(g.io.Stderr, "keystile: warning: the value of %s is shorter than %d bytes and cannot be masked in the output\n", injs[i].name, runexec.MinMaskLen)
		}
		if err := runexec.RecordInjections(dir, recs); err != nil {
			return fmt.Errorf("exec: refusing to inject unrecorded secrets: %w", err)
		}
	}

	var tok secret.Value
	if f.tokenFromEnv != "" {
		tok = secret.FromString(g.io.Getenv(f.tokenFromEnv))
		if !token.LooksValid(string(tok.Reveal())) {
			return fmt.Errorf("exec: $%s does not hold a well-formed kst_ token", f.tokenFromEnv)
		}
	} else {
		venues := f.mint.venues
		if len(venues) == 0 {
			for id := range cfg.Venues {
				venues = append(venues, id)
			}
			slices.Sort(venues)
		}
		if len(venues) == 0 {
			return usagef("exec: no venue is configured; pass --venue")
		}
		mf := f.mint
		if !f.ttlSet && cfg.Tokens.MaxTTL > 0 {
			mf.ttl = min(mf.ttl, cfg.Tokens.MaxTTL)
		}
		m, err := c.CreateToken(ctx, mf.request("exec "+filepath.Base(args[0]), venues))
		if err != nil {
			return fmt.Errorf("exec: mint token: %w", err)
		}
		tok = secret.FromString(m.Token)
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if _, rerr := c.TokenAction(rctx, m.Info.ID, "revoke"); rerr != nil {
				fmt.Fprintf(g.io.Stderr, "keystile: warning: could not revoke token %s (it expires at %s): %v\n", m.Info.ID, m.Info.ExpiresAt.Format(time.RFC3339), rerr)
			}
		}()
	}
	masked = append(masked, tok)
	vars = append(vars, runexec.Var{Name: f.tokenEnv, Value: tok})

	env, stripped := runexec.EnvPolicy{Keep: f.keepEnv}.ChildEnv(g.environ(), vars)
	if len(stripped) > 0 {
		fmt.Fprintf(g.io.Stderr, "keystile: exec: not passing %d inherited variables that look like credentials: %s (pass one with --keep-env NAME)\n",
			len(stripped), strings.Join(stripped, ", "))
	}
	err = runexec.Run(ctx, runexec.Options{
		Args: args, Env: env,
		Stdin: g.io.Stdin, Stdout: g.io.Stdout, Stderr: g.io.Stderr, Mask: masked,
	})
	return err
}

// resolveRefs resolves every reference; the vault is opened standalone
// only if a vault: reference needs it, and closed before the child runs.
func (g *globals) resolveRefs(ctx context.Context, cfg *config.Config, dir string, injs []injection) ([]secret.Value, error) {
	r := &secretref.Resolver{Getenv: g.io.Getenv, Keyring: masterkey.OSKeyring{}}
	for _, in := range injs {
		if in.ref.Scheme == secretref.SchemeVault {
			db, v, err := app.OpenVault(ctx, g.env(), dir, cfg, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("exec: open the vault for %s: %w", in.ref, err)
			}
			defer func() { _ = v.Close(context.WithoutCancel(ctx)); _ = db.Close() }()
			r.Vault = v
			break
		}
	}
	out := make([]secret.Value, 0, len(injs))
	for _, in := range injs {
		v, err := r.Resolve(ctx, in.ref)
		if err != nil {
			for _, o := range out {
				o.Wipe()
			}
			return nil, fmt.Errorf("exec: --env %s: %w", in.name, err)
		}
		out = append(out, v)
	}
	return out, nil
}
