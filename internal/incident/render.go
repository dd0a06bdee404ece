package incident

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// timeFmt is how the report writes times.
const timeFmt = "2006-01-02 15:04:05.000Z07:00"

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Markdown writes the report for people: the window, a summary, the
// levers pulled grouped by the five steps of incident response (detect,
// contain, eradicate, recover; review is the rest), and the bot's
// activity before and after containment with its key records.
func (r *Report) Markdown(w io.Writer) error {
	b := &strings.Builder{}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("# Incident report\n\n")
	who := "every token"
	if r.Token != "" {
		who = "token `" + md(r.Token) + "`"
	}
	until := "the end of the log"
	if !r.Until.IsZero() {
		until = r.Until.Format(timeFmt)
	}
	p("- Window: %s to %s, %s\n", r.Since.Format(timeFmt), until, who)
	p("- Generated: %s from audit records %d to %d", r.GeneratedAt.Format(timeFmt), r.FirstSeq, r.LastSeq)
	if r.FirstSeq == 0 {
		p(" (none in the window)")
	}
	p("\n")
	if r.Malformed > 0 {
		p("- **%d stored records did not decode: run `keystile audit verify`.**\n", r.Malformed)
	}
	if r.ContainedAt.IsZero() {
		p("- Contained: **not contained in this window** (no kill switch, freeze or revocation)\n")
	} else {
		p("- Contained at: %s (%s after the window opened)\n", r.ContainedAt.Format(timeFmt), r.ContainedAt.Sub(r.Since).Round(time.Millisecond))
	}
	p("\n## Summary\n\n")
	p("| | before containment | after containment |\n|---|---:|---:|\n")
	row := func(name string, f func(a Activity) string) { p("| %s | %s | %s |\n", name, f(r.Before), f(r.After)) }
	row("requests", func(a Activity) string { return fmt.Sprint(a.Requests) })
	row("allowed", func(a Activity) string { return fmt.Sprint(a.Allowed) })
	row("refused by keystile", func(a Activity) string { return fmt.Sprint(a.Denied) })
	row("errors", func(a Activity) string { return fmt.Sprint(a.Errors) })
	row("orders accepted by a venue", func(a Activity) string { return fmt.Sprint(a.Orders) })
	row("their notional", func(a Activity) string { return amounts(a.Notional) })
	row("tokens / source addresses", func(a Activity) string { return fmt.Sprintf("%d / %d", a.Tokens, a.Sources) })
	row("first / last request", func(a Activity) string { return span(a) })

	p("\n## Response\n")
	for _, ph := range []struct{ id, title, none string }{
		{PhaseDetect, "Detect", "No detection is recorded in the window (the detector writes `detect` records)."},
		{PhaseContain, "Contain", "Nothing was contained: no kill switch, freeze."},
		{PhaseEradicate, "Eradicate", "No orders cancelled, no token or credential revoked."},
		{PhaseRecover, "Recover", "Nothing recovered: the switch was not cleared, no token unfrozen or replaced."},
		{PhaseOther, "Other actions", ""},
	} {
		var acts []Action
		for _, a := range r.Actions {
			if a.Phase == ph.id {
				acts = append(acts, a)
			}
		}
		if len(acts) == 0 && ph.none == "" {
			continue
		}
		p("\n### %s\n\n", ph.title)
		if len(acts) == 0 {
			p("%s\n", ph.none)
			continue
		}
		p("| time | what | by | why | rule |\n|---|---|---|---|---|\n")
		for _, a := range acts {
			p("| %s | %s | %s | %s | %s |\n", a.Time.Format(timeFmt), md(describe(a)), md(a.Actor), md(a.Reason), md(a.Rule))
		}
	}
	p("\n### Review\n\n")
	p("What the bot did, before and after containment: refusals after it show the bot kept trying; orders\n")
	p("accepted after it would mean containment failed. Verify the log (`keystile audit verify`) before relying on it.\n")
	for _, part := range []struct {
		title string
		a     Activity
	}{{"Before containment", r.Before}, {"After containment", r.After}} {
		p("\n## Bot activity: %s\n\n", strings.ToLower(part.title))
		a := part.a
		if a.Requests == 0 {
			p("No requests.\n")
			continue
		}
		p("- By venue: %s\n", counts(a.ByVenue))
		p("- By operation: %s\n", counts(a.ByOperation))
		if len(a.ByRule) > 0 {
			p("- Refusals by rule: %s\n", counts(a.ByRule))
		}
		if len(a.Key) == 0 {
			continue
		}
		p("\nKey records")
		if a.KeyOmitted > 0 {
			p(" (the latest %d; %d earlier ones omitted)", len(a.Key), a.KeyOmitted)
		}
		p(":\n\n| seq | time | token | venue | operation | decision | rule | status | order | venue order id |\n|---:|---|---|---|---|---|---|---:|---|---|\n")
		for _, k := range a.Key {
			p("| %d | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", k.Seq, k.Time.Format(timeFmt), md(k.Token), md(k.Venue),
				md(k.Operation), k.Decision, md(k.Rule), k.Status, md(k.Order), md(k.VenueOrderID))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describe says what an action did, from its operation and detail.
func describe(a Action) string {
	d := a.Detail
	scope := func() string {
		switch s, _ := d["scope"].(string); s {
		case "all":
			return "every token on every venue"
		case "venue":
			return "venue " + a.Venue
		case "token":
			return "token " + a.Token
		}
		return "?"
	}
	var s string
	switch a.Operation {
	case "killswitch.engage":
		s = "kill switch engaged: " + scope()
		if n, _ := d["in_flight"].(float64); n > 0 {
			s += fmt.Sprintf(" (%d requests in flight waited for)", int(n))
		}
		if p, ok := d["persisted"].(bool); ok && !p {
			s += " (NOT persisted)"
		}
	case "killswitch.observed":
		s = "kill switch found engaged: " + scope()
		if why, _ := d["observed"].(string); why != "" {
			s += " (" + why + ")"
		}
	case "killswitch.clear":
		s = "kill switch cleared: " + scope()
		if r, _ := d["engaged_rule"].(string); r != "" {
			s += " (engaged by " + r + ")"
		}
	case "orders.cancel_all":
		ep, _ := d["endpoint"].(string)
		n, _ := d["cancelled"].(float64)
		f, _ := d["failed"].(float64)
		s = fmt.Sprintf("orders cancelled on %s (%s): %d", a.Venue, ep, int(n))
		if ids, _ := d["order_ids"].([]any); len(ids) > 0 {
			var list []string
			for _, id := range ids {
				list = append(list, fmt.Sprint(id))
			}
			if len(list) > 5 {
				list = append(list[:5], "…")
			}
			s += " [" + strings.Join(list, " ") + "]"
		}
		if f > 0 {
			s += fmt.Sprintf(", **%d failed**", int(f))
		}
		if sup, ok := d["supported"].(bool); ok && !sup {
			return fmt.Sprintf("orders NOT cancelled on %s (%s): this venue type has no cancel-all procedure; cancel them at the venue", a.Venue, ep)
		}
	case "token.freeze", "token.unfreeze", "token.revoke", "token.rotate", "token.create":
		s = strings.TrimPrefix(a.Operation, "token.") + " token " + a.Token
	case "detect.finding", "detect.alert", "detect.throttle", "detect.freeze", "detect.freeze_venue", "detect.freeze_credential", "detect.kill":
		s = describeDetect(a)
	default:
		s = a.Operation
		if a.Phase == PhaseDetect {
			s = "detected: " + a.Operation
		}
		if a.Venue != "" {
			s += " on " + a.Venue
		}
		if a.Token != "" {
			s += " for token " + a.Token
		}
	}
	if a.Error != "" {
		s += " — error: " + a.Error
	}
	return s
}

// describeDetect says what a detector found and did.
func describeDetect(a Action) string {
	ev := a.Evidence
	det, _ := ev["detector"].(string)
	target, _ := ev["target"].(string)
	result, _ := ev["result"].(string)
	var s string
	switch strings.TrimPrefix(a.Operation, "detect.") {
	case "finding":
		s = "finding, no action"
	case "alert":
		s = "alert sent"
	case "throttle":
		s = "token " + target + " throttled"
		if until, _ := ev["until"].(string); until != "" {
			s += " until " + until
		}
	case "freeze":
		s = "token " + target + " frozen"
	case "freeze_venue":
		s = "venue " + target + " frozen"
	case "freeze_credential":
		s = "credential " + target + " frozen"
	case "kill":
		s = "kill switch engaged for every token"
	}
	s = "detector " + det + ": " + s
	if op := a.Operation; a.Token != "" && op != "detect.throttle" && op != "detect.freeze" {
		s += " (token " + a.Token + ")"
	}
	if result != "" && result != "done" {
		s += " [" + result + "]"
	}
	if f, _ := ev["finding"].(string); f != "" {
		s += ", finding " + f
	}
	return s
}

func counts(m map[string]int) string {
	var parts []string
	for _, k := range sortedCounts(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return md(strings.Join(parts, ", "))
}

func amounts(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, m[k]+" "+k)
	}
	return strings.Join(parts, ", ")
}

func span(a Activity) string {
	if a.Requests == 0 {
		return "-"
	}
	return a.First.Format("15:04:05.000") + " / " + a.Last.Format("15:04:05.000")
}

// md makes text safe in a Markdown table cell: no line breaks, no pipes,
// no HTML.
func md(s string) string {
	r := strings.NewReplacer("|", "\\|", "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "`", "'")
	return r.Replace(s)
}
