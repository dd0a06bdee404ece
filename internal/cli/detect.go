package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/detect"
)

func newDetect(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Anomaly detection: counters, throttles and freezes in force, learned profiles",
		Long: `detect shows what the anomaly detector of the running server is doing (configured under detect:
in keystile.yaml), lists the holds it put in force (throttled tokens, frozen venues and credentials),
releases them, and shows what it learned about a token. Token freezes are lifted with
keystile token unfreeze.`,
	}
	cmd.AddCommand(newDetectStatus(g), newDetectRelease(g), newDetectShow(g))
	return cmd
}

func newDetectStatus(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Print the detector's counters and the holds in force",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.DetectStatus(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(st)
			}
			return printDetectStatus(g, st)
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func printDetectStatus(g *globals, st admin.DetectStatus) error {
	s := st.Stats
	tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
	state := "on"
	if !s.Enabled {
		state = "off (holds already in force still apply)"
	}
	fmt.Fprintf(tw, "detection:\t%s, %d detectors\n", state, s.Detectors)
	fmt.Fprintf(tw, "events:\t%d analysed, %d queued of %d, %d dropped (queue full)\n", s.Processed, s.Queued, s.QueueSize, s.Dropped)
	fmt.Fprintf(tw, "findings:\t%d reported, %d held back by the cooldown or the per-minute cap\n", s.Findings, s.Suppressed)
	fmt.Fprintf(tw, "actions:\t%d taken, %d failed\n", s.Actions, s.Failed)
	fmt.Fprintf(tw, "profiles:\t%d in memory (%d failed saves)\n", s.Profiles, s.SaveErrors)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Holds) == 0 {
		fmt.Fprintln(g.io.Stdout, "holds: none")
	} else {
		fmt.Fprintln(g.io.Stdout, "holds:")
		tw = tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tSUBJECT\tSINCE\tUNTIL\tLIMIT\tDETECTOR\tFINDING")
		for _, h := range st.Holds {
			until, limit := "released by an admin", "-"
			if !h.Until.IsZero() {
				until = h.Until.Format(time.RFC3339)
			}
			if h.Kind == detect.HoldThrottle {
				limit = fmt.Sprintf("%d per %s", h.Requests, h.Per)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Kind, h.Subject, h.Since.Format(time.RFC3339), until, limit, orDash(h.Detector), orDash(h.Finding))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.Recent) == 0 {
		fmt.Fprintf(g.io.Stdout, "findings in the last %s: none\n", shortDuration(admin.RecentWindow))
		return nil
	}
	fmt.Fprintf(g.io.Stdout, "findings in the last %s (newest first; keystile audit query --kind detect has them all):\n", shortDuration(admin.RecentWindow))
	for _, f := range st.Recent {
		fmt.Fprintf(g.io.Stdout, "  %s %s\n", f.ID, findingLine(f))
	}
	return nil
}

func newDetectRelease(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "release throttle|freeze_venue|freeze_credential SUBJECT",
		Short: "Lift a throttle (SUBJECT: token id) or a venue or credential freeze",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("%s: want a hold kind and its subject, got %d arguments", cmd.CommandPath(), len(args))
			}
			switch args[0] {
			case detect.HoldThrottle, detect.HoldFreezeVenue, detect.HoldFreezeCredential:
			default:
				return usagef("hold kind must be throttle, freeze_venue or freeze_credential, got %q", args[0])
			}
			if strings.HasPrefix(args[1], "kst_") {
				return usagef("pass the token's public ID (tok_...), never the token itself")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.ReleaseHold(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(st)
			}
			fmt.Fprintf(g.io.Stdout, "released %s %s (%d holds still in force)\n", args[0], args[1], len(st.Holds))
			return nil
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func newDetectShow(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "show TOKEN_ID [--json]",
		Short: "Show what the detector learned about a token",
		Args:  idArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.DetectProfile(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(p)
			}
			return printProfile(g, p)
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func printProfile(g *globals, p detect.ProfileView) error {
	tw := tabwriter.NewWriter(g.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "token:\t%s\nseen:\t%s to %s\nrequests:\t%d learned\norders:\t%d learned\nsources:\t%d known\n",
		p.Token, p.First.Format(time.RFC3339), p.Last.Format(time.RFC3339), p.Requests, p.Orders, p.Sources)
	line := func(name string, b detect.BaselineView) {
		if !b.Ready {
			fmt.Fprintf(tw, "%s:\twarming up (%d values)\n", name, b.Observations)
			return
		}
		fmt.Fprintf(tw, "%s:\tusual %.6g (%d values)\n", name, b.Usual, b.Observations)
	}
	line("orders per "+orDash(p.OrderRate.Window), p.OrderRate)
	for _, k := range sortedKeys(p.Notional) {
		line("notional "+k+" per "+p.Notional[k].Window, p.Notional[k])
	}
	for _, k := range sortedKeys(p.Size) {
		line("order size "+k, p.Size[k])
	}
	fmt.Fprintf(tw, "venues:\t%s\ninstruments:\t%s\n", counts(p.Venues), counts(p.Instruments))
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s (%d)", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
