package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/killswitch"
)

// errCancelIncomplete is the exit status of a panic whose order
// cancellation left orders open (the switch itself is engaged).
var errCancelIncomplete = errors.New("the kill switch is engaged, but some orders may still be open (see above)")

func newPanic(g *globals) *cobra.Command {
	var reason, venueID string
	var cancel, jsonOut bool
	cmd := &cobra.Command{
		Use:   "panic --reason TEXT [--venue V] [--cancel-orders]",
		Short: "Engage the kill switch: refuse every bot request (or a venue's) at once",
		Long: `panic engages the kill switch: from the moment it returns, the gateway refuses every request of
every token (403, rule token.killed) — or, with --venue, every request to that venue — before anything
is signed; requests already on their way to a venue are waited for first. Health checks and the admin
API keep working. The switch is kept in the database: it survives restarts, and every server sharing
the database applies it (within killswitch.refresh). Only keystile panic clear lifts it.

--cancel-orders then cancels the open orders on every venue (or --venue's) through each venue's own
cancel-all procedure, retried while orders remain, and reports what was cancelled and what failed
(exit status 1 if anything may still be open).

If no server answers on the admin socket, the switch is engaged directly in the database (a server
started later applies it); orders can only be cancelled by a running server.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(reason) == "" {
				return usagef("panic: --reason is required (it goes into the audit log)")
			}
			ctx := cmd.Context()
			req := admin.PanicRequest{Reason: reason, Venue: venueID, CancelOrders: cancel}
			c, err := g.client()
			var res admin.PanicResult
			if err == nil {
				res, err = c.Panic(ctx, req)
			}
			if errors.Is(err, admin.ErrNotRunning) {
				return g.panicOffline(cmd, req, jsonOut)
			}
			if err != nil {
				return err
			}
			if jsonOut {
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else {
				printEngaged(g.io.Stdout, res.Engaged)
				if cancel {
					printCancel(g.io.Stdout, res)
				}
			}
			if cancel && !cancelComplete(res) {
				return errCancelIncomplete
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "why (required; recorded with who ran it)")
	f.StringVar(&venueID, "venue", "", "only this venue id (default: every venue)")
	f.BoolVar(&cancel, "cancel-orders", false, "also cancel the open orders through each venue's cancel-all procedure")
	jsonFlag(cmd, &jsonOut)
	cmd.AddCommand(newPanicClear(g), newPanicStatus(g))
	return cmd
}

// panicOffline engages the switch in the database when no server runs.
func (g *globals) panicOffline(cmd *cobra.Command, req admin.PanicRequest, jsonOut bool) error {
	cfg, dir, err := g.resolve()
	if err != nil {
		return err
	}
	res, err := app.PanicOffline(cmd.Context(), g.env(), cfg, dir, req.Venue, req.Reason)
	if err != nil {
		return fmt.Errorf("no server is running and the database could not be written: %w", err)
	}
	if jsonOut {
		if err := g.printJSON(admin.PanicResult{Engaged: res, CancelError: offlineNote(req.CancelOrders)}); err != nil {
			return err
		}
	} else {
		printEngaged(g.io.Stdout, res)
		where := filepath.Join(dir, app.DBFile)
		if cfg.Store.Shared() {
			where = "(store.postgres)"
		}
		fmt.Fprintf(g.io.Stdout, "no server answered on the admin socket: engaged in the database %s; a server applies it when it starts (or within killswitch.refresh if it shares the database)\n",
			where)
	}
	if req.CancelOrders {
		return errors.New("orders were NOT cancelled (that needs the running server): start keystile serve and run keystile panic --cancel-orders again")
	}
	return nil
}

func offlineNote(cancel bool) string {
	if cancel {
		return "no server running: orders were not cancelled"
	}
	return ""
}

func printEngaged(w io.Writer, e killswitch.Engaged) {
	t := e.Trip
	what := "every token on every venue"
	if t.Scope == killswitch.ScopeVenue {
		what = "every request to venue " + t.Target
	}
	state := "KILL SWITCH ENGAGED"
	if !e.New {
		state = "kill switch already engaged"
	}
	fmt.Fprintf(w, "%s (trip %d): %s is refused; by %s at %s: %q\n", state, t.ID, what, t.Actor, t.EngagedAt.Format(time.RFC3339), t.Reason)
	if e.InFlight > 0 {
		fmt.Fprintf(w, "  requests already on their way when it engaged: %d (%d unanswered after the drain timeout)\n", e.InFlight, e.Unfinished)
	}
	if !e.Persisted {
		fmt.Fprintf(w, "  WARNING: not written to the database yet (retried at every refresh): in force on this server only until then\n")
	}
	if e.AuditError != "" {
		fmt.Fprintf(w, "  warning: not recorded in the audit log: %s\n", e.AuditError)
	}
}

func printCancel(w io.Writer, res admin.PanicResult) {
	if res.CancelError != "" {
		fmt.Fprintf(w, "cancel orders: %s\n", res.CancelError)
	}
	if len(res.Cancel) == 0 {
		return
	}
	fmt.Fprintln(w, "cancel orders:")
	for _, r := range res.Cancel {
		fmt.Fprintf(w, "  %s (%s): ", r.Venue, r.Endpoint)
		if !r.Supported {
			fmt.Fprintf(w, "NOT CANCELLED: %s\n", r.Error)
			continue
		}
		fmt.Fprintf(w, "%d cancelled", len(r.Cancelled))
		if len(r.Cancelled) > 0 {
			ids := r.Cancelled
			more := ""
			if len(ids) > 10 {
				ids, more = ids[:10], fmt.Sprintf(" and %d more", len(r.Cancelled)-10)
			}
			fmt.Fprintf(w, " [%s%s]", strings.Join(ids, " "), more)
		}
		fmt.Fprintf(w, ", %d failed (%d passes, %d requests)\n", len(r.Failed), r.Passes, r.Requests)
		for _, f := range r.Failed {
			id := f.OrderID
			if id == "" {
				id = "-"
			}
			fmt.Fprintf(w, "    FAILED %s: %s\n", id, f.Reason)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", r.Error)
		}
	}
}

func cancelComplete(res admin.PanicResult) bool {
	if res.CancelError != "" {
		return false
	}
	for _, r := range res.Cancel {
		if !r.OK() {
			return false
		}
	}
	return true
}

func newPanicClear(g *globals) *cobra.Command {
	var reason, venueID, tokenID string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "clear --reason TEXT [--venue V | --token ID]",
		Short: "Lift the kill switch (admins only; needs the admin's second factor once MFA is enrolled)",
		Long: `clear lifts the kill switch: every trip, or only the --venue one, or the trips of one token (--token
tok_..., for instance one a bot tripped with POST /-/kill). It needs the running server, goes through
the admin's second-factor gate, and is recorded with who and why. Bots cannot clear it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(reason) == "" {
				return usagef("panic clear: --reason is required (it goes into the audit log)")
			}
			if venueID != "" && tokenID != "" {
				return usagef("panic clear: give --venue or --token, not both")
			}
			if strings.HasPrefix(tokenID, "kst_") {
				return usagef("pass the token's public ID (tok_..., see `keystile token list`), never the token itself")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.PanicClear(cmd.Context(), admin.ClearRequest{Reason: reason, Venue: venueID, Token: tokenID})
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(res)
			}
			if len(res.Cleared) == 0 {
				fmt.Fprintln(g.io.Stdout, "nothing to clear: no matching trip is engaged")
				return nil
			}
			for _, t := range res.Cleared {
				fmt.Fprintf(g.io.Stdout, "cleared trip %d (%s%s), engaged by %s at %s (%s)\n", t.ID, t.Scope, targetSuffix(t), t.Actor,
					t.EngagedAt.Format(time.RFC3339), t.Rule)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "why (required; recorded with who ran it)")
	f.StringVar(&venueID, "venue", "", "only the trip of this venue")
	f.StringVar(&tokenID, "token", "", "only the trips of this token public id (tok_...)")
	jsonFlag(cmd, &jsonOut)
	return cmd
}

func targetSuffix(t killswitch.Trip) string {
	if t.Target == "" {
		return ""
	}
	return " " + t.Target
}

func newPanicStatus(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether the kill switch is engaged, and its trips",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.KillSwitch(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut {
				return g.printJSON(st)
			}
			if !st.Engaged {
				fmt.Fprintln(g.io.Stdout, "kill switch: off")
				return nil
			}
			fmt.Fprintf(g.io.Stdout, "kill switch: ENGAGED (%d trips)\n", len(st.Trips))
			for _, t := range st.Trips {
				fmt.Fprintf(g.io.Stdout, "  trip %d: %s%s since %s by %s (%s): %q\n", t.ID, t.Scope, targetSuffix(t),
					t.EngagedAt.Format(time.RFC3339), t.Actor, t.Rule, t.Reason)
			}
			return nil
		},
	}
	jsonFlag(cmd, &jsonOut)
	return cmd
}
