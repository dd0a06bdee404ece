package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/zalando/go-keyring"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const noArgvValues = "secret values never go on the command line (they end up in shell history and in ps); " +
	"pipe FIELD=VALUE lines on stdin (keystile secret set NAME < file), or use --field F (prompt), " +
	"--from-env F=VAR, --from-file F=PATH or --from-keyring F=SERVICE/USER"

// fieldInputs are the ways a secret command may receive values.
type fieldInputs struct {
	prompt      []string
	fromEnv     []string
	fromFile    []string
	fromKeyring []string
}

func (fi *fieldInputs) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&fi.prompt, "field", nil, "prompt (no echo) for this field's value; repeatable")
	f.StringArrayVar(&fi.fromEnv, "from-env", nil, "FIELD=VAR: take the field from environment variable VAR; repeatable")
	f.StringArrayVar(&fi.fromFile, "from-file", nil, "FIELD=PATH: take the field from a file; repeatable")
	f.StringArrayVar(&fi.fromKeyring, "from-keyring", nil, "FIELD=SERVICE/USER: take the field from the OS keyring; repeatable")
}

// nameArg accepts exactly one NAME and refuses value-looking arguments
// without echoing them.
func nameArg(cmd *cobra.Command, args []string) error {
	for _, a := range args {
		if strings.Contains(a, "=") {
			return usagef("refusing an argument that looks like a value: %s", noArgvValues)
		}
	}
	if len(args) != 1 {
		return usagef("%s: want one credential NAME, got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

func splitPair(flag, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || !fieldName.MatchString(k) || v == "" {
		return "", "", usagef("--%s wants FIELD=%s with a lowercase field name", flag, map[string]string{"from-env": "VAR", "from-file": "PATH", "from-keyring": "SERVICE/USER"}[flag])
	}
	return k, v, nil
}

// collect gathers the field values. It never prints a value.
func (fi *fieldInputs) collect(g *globals) (map[string][]byte, error) {
	out := map[string][]byte{}
	add := func(k string, v []byte) error {
		if _, dup := out[k]; dup {
			secret.Wipe(v)
			return usagef("field %q given twice", k)
		}
		if len(v) == 0 {
			return fmt.Errorf("field %q: empty value", k)
		}
		out[k] = v
		return nil
	}
	fail := func(err error) (map[string][]byte, error) {
		for _, v := range out {
			secret.Wipe(v)
		}
		return nil, err
	}
	for _, f := range fi.prompt {
		if strings.Contains(f, "=") {
			return fail(usagef("--field takes a field name only: %s", noArgvValues))
		}
		if !fieldName.MatchString(f) {
			return fail(usagef("--field %q: invalid field name (lowercase letters, digits, _)", f))
		}
	}
	for _, s := range fi.fromEnv {
		k, name, err := splitPair("from-env", s)
		if err != nil {
			return fail(err)
		}
		if !envName.MatchString(name) {
			return fail(usagef("--from-env %s=...: that is not an environment variable name: %s", k, noArgvValues))
		}
		v := g.io.Getenv(name)
		if v == "" {
			return fail(fmt.Errorf("--from-env %s=%s: environment variable %s is not set or empty", k, name, name))
		}
		if err := add(k, []byte(v)); err != nil {
			return fail(err)
		}
	}
	for _, s := range fi.fromFile {
		k, path, err := splitPair("from-file", s)
		if err != nil {
			return fail(err)
		}
		b, err := readSecretFile(path)
		if err != nil {
			return fail(fmt.Errorf("--from-file %s: %w", k, err))
		}
		if err := add(k, b); err != nil {
			return fail(err)
		}
	}
	for _, s := range fi.fromKeyring {
		k, ref, err := splitPair("from-keyring", s)
		if err != nil {
			return fail(err)
		}
		svc, user, ok := strings.Cut(ref, "/")
		if !ok || svc == "" || user == "" {
			return fail(usagef("--from-keyring %s=SERVICE/USER: want SERVICE/USER", k))
		}
		v, err := keyring.Get(svc, user)
		if err != nil {
			if errors.Is(err, keyring.ErrNotFound) {
				return fail(fmt.Errorf("--from-keyring %s: no entry %s/%s in the OS keyring", k, svc, user))
			}
			return fail(fmt.Errorf("--from-keyring %s: OS keyring unavailable (no Secret Service / D-Bus session here); use stdin or --from-file", k))
		}
		if err := add(k, []byte(v)); err != nil {
			return fail(err)
		}
	}
	if len(fi.prompt) > 0 {
		p := g.prompter()
		if p == nil {
			return fail(errors.New("--field needs a terminal to prompt on; pipe FIELD=VALUE lines on stdin instead"))
		}
		for _, f := range fi.prompt {
			v, err := p(fmt.Sprintf("Value for %s: ", f))
			if err != nil {
				return fail(fmt.Errorf("prompt: %w", err))
			}
			if err := add(f, v); err != nil {
				return fail(err)
			}
		}
	}
	if len(fi.prompt)+len(fi.fromEnv)+len(fi.fromFile)+len(fi.fromKeyring) == 0 {
		if g.prompter() != nil {
			return fail(usagef("nothing to read: pipe FIELD=VALUE lines on stdin, or use --field F to be prompted"))
		}
		m, err := ParseFields(g.io.Stdin)
		if err != nil {
			return fail(err)
		}
		for k, v := range m {
			if err := add(k, v); err != nil {
				return fail(err)
			}
		}
	}
	return out, nil
}

func readSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > vault.MaxFieldSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, vault.MaxFieldSize)
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the operator names the file
	if err != nil {
		return nil, err
	}
	t := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	out := append([]byte(nil), t...)
	secret.Wipe(b)
	return out, nil
}

func newSecret(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Store and manage venue credentials (metadata only is ever shown)",
		Long: `secret manages the credentials keystile signs with. Values enter through stdin (FIELD=VALUE lines),
a no-echo prompt (--field), a file, an environment variable or the OS keyring; never argv.
There is no command that prints a value.`,
	}
	cmd.AddCommand(newSecretSet(g, false), newSecretSet(g, true), newSecretList(g), newSecretShow(g), newSecretRevoke(g), newSecretRm(g))
	return cmd
}

func newSecretSet(g *globals, rotate bool) *cobra.Command {
	var fi fieldInputs
	var rotationDays int
	var jsonOut bool
	use, short := "set NAME", "Store a credential (a new version if it exists)"
	if rotate {
		use, short = "rotate NAME", "Add a new version of an existing credential"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The server checks the fields against every configured venue whose credential is NAME (binance:
api_key and secret or private_key; okx: api_key, secret, passphrase; ...): a missing field, or one
the venue does not read, is refused with both named, and nothing is stored.`,
		Example: `  printf 'api_key=%s\nsecret=%s\n' "$K" "$S" | keystile secret set binance-main
  keystile secret set betfair --field password --from-file client_cert=./client.crt --from-env app_key=BF_APP_KEY`,
		Args:              nameArg,
		ValidArgsFunction: g.complete(secretNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rotationDays < 0 {
				return usagef("--rotation-days must be >= 0")
			}
			fields, err := fi.collect(g)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				for _, v := range fields {
					secret.Wipe(v)
				}
				return err
			}
			info, err := c.SetSecret(cmd.Context(), args[0], admin.SetSecretRequest{Fields: fields, RotationDays: rotationDays, MustExist: rotate})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(info)
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Stored credential %s version %d (fields: %s)\n", info.Name, info.CurrentVersion, strings.Join(info.Fields, ", "))
			return err
		},
	}
	fi.register(cmd)
	cmd.Flags().IntVar(&rotationDays, "rotation-days", 0, "rotation period doctor checks (default 90 for a new credential)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

func newSecretList(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List credentials (metadata only)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				if l == nil {
					l = []vault.Info{}
				}
				return g.printJSON(l)
			}
			tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tVERSION\tFIELDS\tROTATED\tLAST USED")
			for _, i := range l {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", i.Name, i.State, i.CurrentVersion, strings.Join(i.Fields, ","), age(i.RotatedAt), age(i.LastUsedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func printInfo(g *globals, i vault.Info) error {
	tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", i.Name)
	fmt.Fprintf(tw, "state:\t%s\n", i.State)
	fmt.Fprintf(tw, "fields:\t%s\n", strings.Join(i.Fields, ", "))
	fmt.Fprintf(tw, "version:\t%d (kept: %v)\n", i.CurrentVersion, i.Versions)
	fmt.Fprintf(tw, "created:\t%s\n", i.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "rotated:\t%s (%s)\n", i.RotatedAt.Format(time.RFC3339), age(i.RotatedAt))
	fmt.Fprintf(tw, "rotation period:\t%d days\n", i.RotationDays)
	if !i.RevokedAt.IsZero() {
		fmt.Fprintf(tw, "revoked:\t%s\n", i.RevokedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "last used:\t%s\n", age(i.LastUsedAt))
	return tw.Flush()
}

func newSecretShow(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show one credential's metadata (never its values)",
		Args:              nameArg,
		ValidArgsFunction: g.complete(secretNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			i, err := c.ShowSecret(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(i)
			}
			return printInfo(g, i)
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newSecretRevoke(g *globals) *cobra.Command {
	var compromised, jsonOut bool
	cmd := &cobra.Command{
		Use:               "revoke NAME",
		Short:             "Revoke a credential: destroy every version (with --compromised, refuse its values forever)",
		Args:              nameArg,
		ValidArgsFunction: g.complete(secretNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			i, err := c.RevokeSecret(cmd.Context(), args[0], compromised)
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(i)
			}
			msg := "Revoked %s: every version destroyed.\n"
			if compromised {
				msg = "Revoked %s as compromised: every version destroyed; its values will be refused if set again.\n" +
					"Now revoke the key at the venue itself and create a new one.\n"
			}
			_, err = fmt.Fprintf(g.io.Stdout, msg, i.Name)
			return err
		},
	}
	cmd.Flags().BoolVar(&compromised, "compromised", false, "remember keyed fingerprints of the values and refuse them forever")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newSecretRm(g *globals) *cobra.Command {
	var force, jsonOut bool
	cmd := &cobra.Command{
		Use:               "rm NAME [--force]",
		Short:             "Remove a credential and all its versions (--force if a configured venue uses it)",
		Args:              nameArg,
		ValidArgsFunction: g.complete(secretNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RemoveSecret(cmd.Context(), args[0], force); err != nil {
				var ae *admin.APIError
				if errors.As(err, &ae) && ae.Code == "in_use" {
					return usageError{err}
				}
				return err
			}
			if jsonOut {
				return g.printJSON(struct {
					Name    string `json:"name"`
					Removed bool   `json:"removed"`
				}{args[0], true})
			}
			_, err = fmt.Fprintf(g.io.Stdout, "Removed credential %s\n", args[0])
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove it even though a configured venue signs with it")
	jsonFlag(cmd, &jsonOut)
	return cmd
}
