package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/alert"
)

// errSinkFailed makes `alert test` exit 1 when a sink did not accept.
var errSinkFailed = errors.New("alert test: at least one sink failed")

func newAlert(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alert",
		Short: "Check the alert sinks (webhook, Slack, Telegram, ntfy, e-mail)",
		Long: `alert talks to the running server about its alert sinks (alerts: in keystile.yaml).
"alert test" sends a test alert to each sink and reports per sink whether it was accepted;
"alert status" shows the sinks, their last delivery and failure, queues, drops and digests.`,
	}
	cmd.AddCommand(newAlertTest(g), newAlertStatus(g))
	return cmd
}

func newAlertTest(g *globals) *cobra.Command {
	var sink string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "test [--sink NAME]",
		Short: "Send a test alert to every sink (or one) and report each outcome",
		Long: `test sends one test alert (severity info, detector alert.test) to every configured sink, or
to the one named by --sink, once — no retry, no deduplication, no digest — and prints per sink
whether it was accepted and, if not, why. Exit 1 if any sink failed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.TestAlerts(cmd.Context(), sink)
			if err != nil {
				return err
			}
			if jsonOut {
				if res == nil {
					res = []alert.TestResult{}
				}
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else if err := printTestResults(g.io.Stdout, res); err != nil {
				return err
			}
			for _, r := range res {
				if !r.OK {
					return errSinkFailed
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sink, "sink", "", "test only this sink (by name)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the results as JSON")
	return cmd
}

func printTestResults(w io.Writer, res []alert.TestResult) error {
	if len(res) == 0 {
		_, err := fmt.Fprintln(w, "No alert sink is configured (alerts.sinks in keystile.yaml).")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTYPE\tRESULT\tTIME\tALERT ID")
	for _, r := range res {
		out := "ok"
		if !r.OK {
			out = "FAILED: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%dms\t%s\n", r.Sink, r.Type, out, r.Millis, r.AlertID)
	}
	return tw.Flush()
}

func newAlertStatus(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:     "status",
		Aliases: []string{"list"},
		Short:   "Show the alert sinks: deliveries, failures, drops, queues, digests",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.AlertStatus(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(st)
			}
			return printAlertStatus(g.io.Stdout, st)
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the status as JSON")
	return cmd
}

func printAlertStatus(w io.Writer, st alert.Status) error {
	fmt.Fprintf(w, "dedupe window %s, rate limit %s per (detector, subject); queue %d/%d; dropped %d; folded %d (held now %d)\n",
		st.DedupeWindow, st.RateLimit, st.Queued, st.QueueCapacity, st.Dropped, st.Folded, st.Held)
	if len(st.Sinks) == 0 {
		_, err := fmt.Fprintln(w, "No alert sink is configured (alerts.sinks in keystile.yaml).")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTYPE\tMIN\tSTATE\tDELIVERED\tFAILED\tDROPPED\tRETRIES\tQUEUED\tLAST DELIVERY\tDIGEST")
	for _, s := range st.Sinks {
		state := "ok"
		if !s.Healthy {
			state = "failing"
		}
		digest := "-"
		if d := s.Digest; d != nil {
			digest = fmt.Sprintf("≤%s at %s: %d pending", d.MaxSeverity, d.Schedule, d.Pending)
			if !d.Next.IsZero() {
				digest += ", next " + d.Next.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Type, s.MinSeverity, state, s.Delivered, s.Failed,
			s.Dropped, s.Retries, s.Queued, age(s.LastDelivery), digest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range st.Sinks {
		if s.LastError != "" {
			fmt.Fprintf(w, "%s: last failure %s: %s\n", s.Name, s.LastFailure.UTC().Format(time.RFC3339), s.LastError)
		}
	}
	return nil
}
