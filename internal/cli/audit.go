package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
)

func newAudit(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the tamper-evident audit log",
		Long: `The audit log holds one hash-chained record per gateway decision (and an intent record before
each write operation), with signed checkpoints. These commands read it directly (read-only; safe
while keystile serve runs). Tokens and source addresses appear only as HMACs.`,
	}
	cmd.AddCommand(newAuditVerify(g), newAuditPublicKey(g), newAuditTail(g), newAuditQuery(g), newAuditExport(g))
	return cmd
}

// auditKeys opens the vault offline and derives the audit keys.
func (g *globals) auditKeys(ctx context.Context, cfg *config.Config, dir string) (audit.Keys, error) {
	db, v, err := app.OpenVault(ctx, g.env(), dir, cfg, nil, nil)
	if err != nil {
		return audit.Keys{}, err
	}
	defer db.Close()
	defer v.Close(context.WithoutCancel(ctx))
	return app.AuditKeys(ctx, v)
}

func (g *globals) auditReader(ctx context.Context) (app.AuditReader, *config.Config, string, error) {
	cfg, dir, err := g.resolve()
	if err != nil {
		return nil, nil, "", err
	}
	r, err := app.OpenAuditReaderEnv(ctx, g.env(), cfg, dir)
	if err != nil {
		return nil, nil, "", err
	}
	return r, cfg, dir, nil
}

func newAuditVerify(g *globals) *cobra.Command {
	var keyFile string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "verify [--public-key FILE]",
		Short: "Recompute the hash chain and check every signed checkpoint",
		Long: `verify recomputes every record's hash and the chain from the first record, and checks each
checkpoint's Ed25519 signature and that it names a stored record with the same hash. The public
key is derived from the vault, or read from FILE (written by keystile audit public-key).
Exit status 1 names the first bad record.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, cfg, dir, err := g.auditReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			var pub ed25519.PublicKey
			if keyFile != "" {
				if pub, err = readPublicKey(keyFile); err != nil {
					return err
				}
			} else {
				k, err := g.auditKeys(ctx, cfg, dir)
				if err != nil {
					return fmt.Errorf("audit verify: the public key comes from the vault (or pass --public-key FILE): %w", err)
				}
				pub = k.PublicKey()
			}
			rep, err := audit.Verify(ctx, r, pub)
			var ve *audit.VerifyError
			if errors.As(err, &ve) {
				fmt.Fprintf(g.io.Stdout, "FAILED at record %d: %s\n(%d records before it verified)\n", ve.Seq, ve.Reason, rep.Records)
				return fmt.Errorf("audit verify: record %d: %s", ve.Seq, ve.Reason)
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(rep)
			}
			fmt.Fprintf(g.io.Stdout, "OK: %d records, %d checkpoints, last record %d, last checkpoint %d\n",
				rep.Records, rep.Checkpoints, rep.LastSeq, rep.LastCheckpointSeq)
			if rep.Unsigned > 0 {
				fmt.Fprintf(g.io.Stdout, "note: the last %d records are chained but not yet covered by a signed checkpoint\n", rep.Unsigned)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "public-key", "", "checkpoint public key file (hex or PEM) instead of the vault")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}

// readPublicKey reads an Ed25519 public key as hex or a PEM "PUBLIC KEY".
func readPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- operator's key file
	if err != nil {
		return nil, fmt.Errorf("audit: public key: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: public key %s: %w", path, err)
		}
		pk, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("audit: public key %s: not an Ed25519 key", path)
		}
		return pk, nil
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("audit: public key %s: want 64 hex digits or a PEM PUBLIC KEY", path)
	}
	return ed25519.PublicKey(raw), nil
}

func newAuditPublicKey(g *globals) *cobra.Command {
	var out *formatFlags
	cmd := &cobra.Command{
		Use:   "public-key [--format hex|pem] [--json]",
		Short: "Print the public key that verifies the audit log's checkpoints",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.value(cmd)
			if err != nil {
				return err
			}
			cfg, dir, err := g.resolve()
			if err != nil {
				return err
			}
			k, err := g.auditKeys(cmd.Context(), cfg, dir)
			if err != nil {
				return err
			}
			pub := k.PublicKey()
			if format == "hex" {
				_, err = fmt.Fprintln(g.io.Stdout, hex.EncodeToString(pub))
				return err
			}
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				return err
			}
			pemText := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			if format == "json" {
				return g.printJSON(struct {
					Algorithm    string `json:"algorithm"`
					PublicKeyHex string `json:"public_key_hex"`
					PublicKeyPEM string `json:"public_key_pem"`
				}{"ed25519", hex.EncodeToString(pub), string(pemText)})
			}
			_, err = g.io.Stdout.Write(pemText)
			return err
		},
	}
	out = newFormatFlags(cmd, "hex", "hex", "pem", "json")
	return cmd
}

// auditFilter selects records for tail and query.
type auditFilter struct {
	since     string
	token     string
	venue     string
	decision  string
	kind      string
	sinceTime time.Time
	tokenHash string
}

func (f *auditFilter) prepare(now time.Time) error {
	if f.since != "" {
		if d, err := time.ParseDuration(f.since); err == nil {
			f.sinceTime = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, f.since); err == nil {
			f.sinceTime = t
		} else {
			return usagef("--since wants a duration (90m) or an RFC 3339 time (2026-01-02T15:04:05Z)")
		}
	}
	switch f.decision {
	case "", audit.Allow, audit.Deny, audit.Error, "info", "warning", "critical":
	default:
		return usagef("--decision wants allow, deny or error (or a detect record's severity: info, warning, critical)")
	}
	switch f.kind {
	case "", audit.KindIntent, audit.KindOutcome, audit.KindAction, audit.KindDetect:
	default:
		return usagef("--kind wants intent, outcome, action or detect")
	}
	return nil
}

func (f *auditFilter) match(r audit.Record) bool {
	return r.Hash != "" && (f.sinceTime.IsZero() || !r.Time.Before(f.sinceTime)) &&
		(f.tokenHash == "" || r.Token == f.tokenHash) && (f.venue == "" || r.Venue == f.venue) &&
		(f.decision == "" || r.Decision == f.decision) && (f.kind == "" || r.Kind == f.kind)
}

func (g *globals) printRecord(r audit.Record, jsonOut bool) {
	if jsonOut {
		fmt.Fprintf(g.io.Stdout, "%s\n", r.Raw)
		return
	}
	if r.Hash == "" {
		fmt.Fprintf(g.io.Stdout, "(malformed record: run keystile audit verify)\n")
		return
	}
	line := fmt.Sprintf("%d %s %-7s %-5s %3d %s %s %s %s", r.Seq, r.Time.Format(time.RFC3339Nano), r.Kind, r.Decision,
		r.Status, orDash(r.Venue), orDash(r.Operation), orDash(r.Method), orDash(r.Path))
	if r.Rule != "" {
		line += " rule=" + r.Rule
	}
	if r.Instrument != "" {
		line += fmt.Sprintf(" %s %s %s@%s", r.Instrument, r.Side, r.Quantity, r.Price)
	}
	if r.Error != "" {
		line += fmt.Sprintf(" error=%q", r.Error)
	}
	if r.Actor != "" {
		line += fmt.Sprintf(" actor=%q", r.Actor)
	}
	if r.Reason != "" {
		line += fmt.Sprintf(" reason=%q", r.Reason)
	}
	if r.Detail != "" {
		line += " detail=" + r.Detail
	}
	if r.Kind == audit.KindDetect {
		line += " evidence=" + r.Evidence
	}
	fmt.Fprintf(g.io.Stdout, "%s request=%s\n", line, r.RequestID)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAuditTail(g *globals) *cobra.Command {
	var n int
	var follow, jsonOut bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "tail [-n 20] [-f]",
		Short: "Print the last records (and follow new ones with -f)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 0 {
				return usagef("audit tail: -n must not be negative")
			}
			ctx := cmd.Context()
			r, _, _, err := g.auditReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			h, err := r.Head(ctx)
			if err != nil {
				return err
			}
			from := uint64(1)
			if h.Seq >= uint64(n) { // #nosec G115 -- n >= 0
				from = h.Seq - uint64(n) + 1 // #nosec G115 -- n >= 0
			}
			next := from
			emit := func(rec audit.Record) error {
				if rec.Hash != "" {
					next = rec.Seq + 1
				}
				if n > 0 || follow && rec.Seq > h.Seq {
					g.printRecord(rec, jsonOut)
				}
				return nil
			}
			if err := r.Scan(ctx, from, emit); err != nil {
				return err
			}
			if !follow {
				return nil
			}
			if h.Seq < next {
				h.Seq = next - 1
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
				if err := r.Scan(ctx, next, emit); err != nil && ctx.Err() == nil {
					return err
				}
			}
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "number of records to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records (polls the store)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "poll interval with -f")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print canonical JSON lines")
	return cmd
}

func newAuditQuery(g *globals) *cobra.Command {
	var f auditFilter
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "query [--since DURATION|RFC3339] [--token ID] [--venue V] [--decision allow|deny|error] [--kind intent|outcome|detect] [--json]",
		Short: "Print the records that match every filter given",
		Long: `query prints matching records. --token takes a token's public id (tok_...); records hold only
its HMAC, so matching it opens the vault (offline) to derive the identity key.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.prepare(time.Now()); err != nil {
				return err
			}
			ctx := cmd.Context()
			r, cfg, dir, err := g.auditReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			if f.token != "" {
				if strings.HasPrefix(f.token, "kst_") {
					return usagef("--token takes the token's public id (tok_...), never the token itself")
				}
				k, err := g.auditKeys(ctx, cfg, dir)
				if err != nil {
					return fmt.Errorf("audit query --token needs the vault: %w", err)
				}
				f.tokenHash = k.TokenHash(f.token)
			}
			return r.Scan(ctx, 1, func(rec audit.Record) error {
				if f.match(rec) {
					g.printRecord(rec, jsonOut)
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.since, "since", "", "only records at or after this time: a duration back from now (24h) or RFC 3339")
	fl.StringVar(&f.token, "token", "", "only records of this token public id")
	fl.StringVar(&f.venue, "venue", "", "only records for this venue")
	fl.StringVar(&f.decision, "decision", "", "only records with this decision: allow, deny or error (detect records: info, warning, critical)")
	fl.StringVar(&f.kind, "kind", "", "only records of this kind: intent, outcome, action (levers pulled: kill switch, cancel-all, token levers) or detect (the detector's findings and actions)")
	fl.BoolVar(&jsonOut, "json", false, "print canonical JSON lines")
	return cmd
}

func newAuditExport(g *globals) *cobra.Command {
	var out *formatFlags
	cmd := &cobra.Command{
		Use:   "export [--format jsonl]",
		Short: "Write the whole log (records, then checkpoints) to stdout as canonical JSON lines",
		Long: `export writes every record and then every checkpoint as canonical JSON lines: the output is a
JSONL audit log that keystile audit verify accepts (audit.sink jsonl, audit.path FILE).
--json prints the same JSON lines.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := out.value(cmd); err != nil {
				return err
			}
			ctx := cmd.Context()
			r, _, _, err := g.auditReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			if err := r.Scan(ctx, 1, func(rec audit.Record) error {
				_, err := fmt.Fprintf(g.io.Stdout, "%s\n", rec.Raw)
				return err
			}); err != nil {
				return err
			}
			return r.Checkpoints(ctx, func(c audit.Checkpoint) error {
				_, err := fmt.Fprintf(g.io.Stdout, "%s\n", c.Raw)
				return err
			})
		},
	}
	out = newFormatFlags(cmd, "jsonl", "jsonl")
	return cmd
}
