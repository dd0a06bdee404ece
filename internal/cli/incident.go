package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/incident"
)

func newIncident(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Incident response: reports from the audit log",
	}
	cmd.AddCommand(newIncidentReport(g))
	return cmd
}

func newIncidentReport(g *globals) *cobra.Command {
	var since, until, tokenID, output string
	var jsonOut bool
	var keyRecords int
	cmd := &cobra.Command{
		Use:   "report --since DURATION|RFC3339 [--until RFC3339] [--token ID] [--json] [-o FILE]",
		Short: "Write an incident timeline (Markdown, or JSON) from the audit log",
		Long: `report reads the audit log (read-only; safe while keystile serve runs) and writes a timeline of the
window: what was detected, contained (kill switch, freezes), eradicated (orders cancelled, tokens
revoked) and recovered (switch cleared, tokens unfrozen or replaced), by whom and why, then what the
bot did before and after containment — counts by venue, operation and refusal rule, orders accepted
and their notional, and the key records (orders, refusals, errors).

--token takes a token's public id (tok_...): records hold only its HMAC, so matching it opens the
vault offline to derive the audit identity key. Without --token the report covers every token and
names each by an HMAC prefix.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since == "" {
				return usagef("incident report: --since is required (a duration back from now like 24h, or an RFC 3339 time)")
			}
			now := time.Now()
			f := auditFilter{since: since}
			if err := f.prepare(now); err != nil {
				return err
			}
			o := incident.Options{Since: f.sinceTime, GeneratedAt: now, KeyRecords: keyRecords}
			if until != "" {
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usagef("--until wants an RFC 3339 time (2026-01-02T15:04:05Z)")
				}
				o.Until = t
			}
			if strings.HasPrefix(tokenID, "kst_") {
				return usagef("--token takes the token's public id (tok_...), never the token itself")
			}
			ctx := cmd.Context()
			r, cfg, dir, err := g.auditReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			if tokenID != "" {
				k, err := g.auditKeys(ctx, cfg, dir)
				if err != nil {
					return fmt.Errorf("incident report --token needs the vault: %w", err)
				}
				o.TokenHash, o.TokenLabel = k.TokenHash(tokenID), tokenID
			}
			rep, err := incident.Build(ctx, r, o)
			if err != nil {
				return err
			}
			var w io.Writer = g.io.Stdout
			if output != "" {
				file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- the operator's output file
				if err != nil {
					return fmt.Errorf("incident report: %w", err)
				}
				defer file.Close()
				w = file
			}
			if jsonOut {
				err = rep.JSON(w)
			} else {
				err = rep.Markdown(w)
			}
			if err != nil {
				return fmt.Errorf("incident report: write: %w", err)
			}
			if output != "" {
				fmt.Fprintf(g.io.Stderr, "wrote %s\n", output)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "start of the window: a duration back from now (24h) or RFC 3339 (required)")
	fl.StringVar(&until, "until", "", "end of the window, RFC 3339 (default: the end of the log)")
	fl.StringVar(&tokenID, "token", "", "only this token public id (tok_...)")
	jsonFlag(cmd, &jsonOut)
	fl.StringVarP(&output, "output", "o", "", "write to FILE (mode 0600) instead of standard output")
	fl.IntVar(&keyRecords, "key-records", 25, "key records listed before and after containment")
	return cmd
}
