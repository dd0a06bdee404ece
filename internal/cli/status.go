package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/detect"
)

// statusJSON is the JSON form of keystile status: up, then the server's
// status document (absent when the server is down, with error instead).
type statusJSON struct {
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
	*admin.Status
}

func newStatus(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether the server runs, and what it serves (metadata only)",
		Long: `status asks the running server (over the admin socket) for its pid, version and uptime, the
gateway's address, the configured venues (type, sandbox or live, whether their credential is in
the vault), the database (path, size, schema version; with store.postgres the server, whether it
answers, the replica, and Redis ok or down with the fallbacks in use), the audit log's head (records, last hash
prefix, last checkpoint) and token counts by state. No secret value or token is shown.
Exit 1 when the server is not running or cannot be asked.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := serverStatus(g, cmd)
			if err != nil {
				if jsonOut {
					_ = g.printJSON(statusJSON{Error: err.Error()})
				}
				return err
			}
			if jsonOut {
				return g.printJSON(statusJSON{Up: true, Status: &st})
			}
			return printStatus(g.io.Stdout, st)
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the status as JSON (snake_case keys)")
	return cmd
}

func serverStatus(g *globals, cmd *cobra.Command) (admin.Status, error) {
	c, err := g.client()
	if err == nil {
		var st admin.Status
		if st, err = c.Status(cmd.Context()); err == nil {
			return st, nil
		}
	}
	switch {
	case errors.Is(err, admin.ErrNotRunning):
		return admin.Status{}, fmt.Errorf("server down: %w; as a service: systemctl status keystile", err)
	case errors.Is(err, admin.ErrSocketOwner):
		return admin.Status{}, fmt.Errorf("%w; run keystile as the server's user (as a service: sudo -u keystile keystile --data-dir /var/lib/keystile status)", err)
	}
	return admin.Status{}, err
}

func printStatus(w io.Writer, st admin.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	up := time.Duration(st.UptimeSeconds) * time.Second
	fmt.Fprintf(tw, "server:\tup, pid %d, %s, up %s (since %s)\n", st.PID, st.Build.Short(), up, st.StartedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "data dir:\t%s\n", st.DataDir)
	cfg := st.Config
	if cfg == "" {
		cfg = "(built-in defaults; nothing to reload)"
	}
	fmt.Fprintf(tw, "config:\t%s\n", cfg)
	var gw []string
	if st.Gateway != "" {
		gw = append(gw, "http://"+st.Gateway)
	}
	if st.GatewaySocket != "" {
		gw = append(gw, "unix:"+st.GatewaySocket)
	}
	if len(gw) == 0 {
		gw = append(gw, "(no listener)")
	}
	fmt.Fprintf(tw, "gateway:\t%s\n", strings.Join(gw, ", "))
	if st.Metrics != "" {
		fmt.Fprintf(tw, "metrics:\thttp://%s/metrics\n", st.Metrics)
	}
	if st.Console != "" {
		fmt.Fprintf(tw, "console:\t%s\n", st.Console)
	}
	if len(st.RestartNeeded) > 0 {
		fmt.Fprintf(tw, "restart needed:\t%s changed in the config file; they apply after a restart\n", strings.Join(st.RestartNeeded, ", "))
	}
	if s := st.Store; s != nil {
		fmt.Fprintf(tw, "store:\t%s\n", storeLine(s))
		if r := s.Redis; r != nil {
			fmt.Fprintf(tw, "redis:\t%s\n", redisLine(r))
		}
	}
	if a := st.Audit; a != nil {
		fmt.Fprintf(tw, "audit:\t%s\n", auditLine(a))
	}
	if t := st.Tokens; t != nil {
		if t.Error != "" {
			fmt.Fprintf(tw, "tokens:\terror: %s\n", t.Error)
		} else {
			fmt.Fprintf(tw, "tokens:\t%d: %d active, %d frozen, %d revoked, %d expired, %d in rotation grace, %d rotated out\n",
				t.Total, t.Active, t.Frozen, t.Revoked, t.Expired, t.Grace, t.Rotated)
		}
	}
	if k := st.KillSwitch; k != nil {
		fmt.Fprintf(tw, "kill switch:\t%s\n", killLine(k))
	}
	if a := st.Alerts; a != nil {
		fmt.Fprintf(tw, "detection:\t%s\n", detectionLine(a))
		if a.Detector != "none" {
			fmt.Fprintf(tw, "findings:\t%s\n", findingsLine(a))
			for _, f := range a.Findings {
				fmt.Fprintf(tw, "\t  %s\n", findingLine(f))
			}
		}
		fmt.Fprintf(tw, "alert sinks:\t%s\n", alertSinksLine(a))
	}
	if len(st.Venues) == 0 {
		fmt.Fprintf(tw, "venues:\tnone configured\n")
	} else {
		fmt.Fprintf(tw, "venues:\t%d\n", len(st.Venues))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Venues) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTYPE\tMODE\tCREDENTIAL\tIN VAULT")
	for _, v := range st.Venues {
		mode := v.Mode
		if v.TestEndpoint {
			mode += " (+test endpoint)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", v.ID, v.Type, mode, v.Credential, v.CredentialState)
	}
	return tw.Flush()
}

func auditLine(a *admin.AuditStatus) string {
	var b strings.Builder
	b.WriteString(a.Sink)
	if a.Path != "" {
		b.WriteString(" " + a.Path)
	}
	switch {
	case a.Error != "":
		b.WriteString(": error: " + a.Error)
	case a.Note != "":
		b.WriteString(": " + a.Note)
	default:
		fmt.Fprintf(&b, ": %d records", a.Records)
		if a.LastHash != "" {
			fmt.Fprintf(&b, ", last hash %s…", a.LastHash)
		}
		if a.LastCheckpointSeq > 0 {
			fmt.Fprintf(&b, ", last checkpoint at record %d (%s)", a.LastCheckpointSeq, a.LastCheckpointAt.Format(time.RFC3339))
		} else {
			b.WriteString(", no checkpoint yet")
		}
		if a.Unsigned > 0 {
			fmt.Fprintf(&b, ", %d after it", a.Unsigned)
		}
	}
	if !a.Healthy {
		b.WriteString("; WRITES FAILING: " + a.WriteError)
	}
	return b.String()
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return "; error: " + e
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// killLine is the kill switch's state: off, or each trip in force.
func killLine(k *admin.KillSwitchStatus) string {
	if !k.Engaged {
		return "off"
	}
	parts := make([]string, 0, len(k.Trips))
	for i, t := range k.Trips {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d more", len(k.Trips)-3))
			break
		}
		what := string(t.Scope)
		if t.Target != "" {
			what += " " + t.Target
		}
		parts = append(parts, fmt.Sprintf("%s by %s (%s) since %s", what, t.Actor, t.Rule, t.EngagedAt.UTC().Format(time.RFC3339)))
	}
	return fmt.Sprintf("ENGAGED, %d trips: %s (keystile panic status; lift with keystile panic clear)", len(k.Trips), strings.Join(parts, "; "))
}

// detectionLine is the detector's state.
func detectionLine(a *admin.AlertsStatus) string {
	switch a.Detector {
	case "none":
		return "none running: nothing watches for anomalies"
	case "detect (disabled)":
		return fmt.Sprintf("off (detect.enabled: false); %d holds still in force (keystile detect status)", a.Holds)
	}
	s := fmt.Sprintf("on, %d detectors; %d holds in force", a.Detectors, a.Holds)
	if a.EventsDropped > 0 {
		s += fmt.Sprintf("; %d events DROPPED (queue full)", a.EventsDropped)
	}
	return s + " (keystile detect status)"
}

// findingsLine counts the findings of the last day.
func findingsLine(a *admin.AlertsStatus) string {
	if a.OpenFindings == 0 {
		return fmt.Sprintf("none in the last %s", shortDuration(admin.RecentWindow))
	}
	s := fmt.Sprintf("%d in the last %s", a.OpenFindings, shortDuration(admin.RecentWindow))
	if a.OpenCritical > 0 {
		s += fmt.Sprintf(" (%d critical)", a.OpenCritical)
	}
	if a.OpenFindings > len(a.Findings) {
		s += fmt.Sprintf(", the newest %d:", len(a.Findings))
	} else {
		s += ":"
	}
	return s
}

// findingLine is one finding: when, how bad, what, about whom, and what
// was done.
func findingLine(f detect.FindingView) string {
	acts := make([]string, 0, len(f.Actions))
	for _, x := range f.Actions {
		acts = append(acts, x.Action+" "+x.Result)
	}
	done := "no action"
	if len(acts) > 0 {
		done = strings.Join(acts, ", ")
	}
	return fmt.Sprintf("%s %s %s %s: %s [%s]", f.Time.UTC().Format(time.RFC3339), f.Severity, f.Detector, f.Subject, oneLine(f.Summary, 120), done)
}

// oneLine cuts s to n bytes on a rune boundary, on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func shortDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%d h", d/time.Hour)
	}
	return d.String()
}

func alertSinksLine(a *admin.AlertsStatus) string {
	if a.Sinks == 0 {
		if a.Detector == "detect" {
			return "none configured: findings go to the server log only (alerts: in keystile.yaml)"
		}
		return "none configured (alerts: in keystile.yaml)"
	}
	s := fmt.Sprintf("%d", a.Sinks)
	if len(a.Unhealthy) > 0 {
		s += ", failing: " + strings.Join(a.Unhealthy, ", ")
	}
	if a.Dropped > 0 {
		s += fmt.Sprintf(", %d alerts dropped", a.Dropped)
	}
	return s + " (keystile alert status)"
}

// storeLine describes the main database: the SQLite file, or the
// PostgreSQL server and whether it answers.
func storeLine(s *admin.StoreStatus) string {
	if s.Backend != "postgres" {
		return fmt.Sprintf("%s (%s, WAL %s, schema version %d)%s", s.Path, bytesIEC(s.SizeBytes), bytesIEC(s.WALBytes), s.SchemaVersion, errSuffix(s.Error))
	}
	state := "reachable"
	if !s.Reachable {
		state = "UNREACHABLE"
	}
	replica := ""
	if s.ReplicaID != "" {
		replica = ", replica " + s.ReplicaID
	}
	return fmt.Sprintf("postgres %s (%s, schema version %d%s)%s", s.Path, state, s.SchemaVersion, replica, errSuffix(s.Error))
}

// redisLine is Redis's state, the fan-out in use and the rate-limit
// fallback.
func redisLine(r *admin.RedisStatus) string {
	state := r.State
	if state != "ok" {
		state = strings.ToUpper(state)
	}
	return fmt.Sprintf("%s %s (fan-out: %s; rate limits if down: %s)%s", r.Addr, state, r.FanOut, r.RateLimitFallback, errSuffix(r.Error))
}
