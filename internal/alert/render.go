package alert

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Title is a one-line heading for a, e.g.
// "keystile HIGH: detect.order_size (token tok_ab12, venue binance)".
// Its text comes from fields that Send has already scrubbed and bounded.
func Title(a *Alert) string {
	switch a.Kind {
	case KindDigest:
		return fmt.Sprintf("keystile digest: %d alert%s", len(a.Items), plural(len(a.Items)))
	case KindTest:
		return "keystile test alert"
	case KindDropped:
		return "keystile " + strings.ToUpper(a.Severity.String()) + ": alerts were lost"
	}
	t := fmt.Sprintf("keystile %s: %s (%s)", strings.ToUpper(a.Severity.String()), a.Detector, a.Subject)
	if a.Count > 1 {
		t += fmt.Sprintf(" ×%d", a.Count)
	}
	return t
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Text renders a as plain text of at most maxLen bytes (0: no limit),
// cutting whole lines and saying so when it must. Sinks that cannot take
// structure (Telegram, ntfy, e-mail, Slack) send this.
func Text(a *Alert, maxLen int) string {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	add("%s", a.Summary)
	add("")
	if a.Kind == KindDigest {
		for _, it := range a.Items {
			line := fmt.Sprintf("%s  %-8s %s (%s): %s", it.Time.UTC().Format("2006-01-02 15:04Z"), it.Severity, it.Detector, it.Subject, it.Summary)
			if it.Count > 1 {
				line += fmt.Sprintf(" [×%d since %s]", it.Count, it.FirstSeen.UTC().Format(time.RFC3339))
			}
			lines = append(lines, line)
		}
		add("")
	} else {
		add("severity: %s", a.Severity)
		add("detector: %s", a.Detector)
		add("subject: %s", a.Subject)
		add("time: %s", a.Time.UTC().Format(time.RFC3339))
		if a.Count > 1 {
			add("repeated: %d alerts of this kind since %s (folded into this message)", a.Count, a.FirstSeen.UTC().Format(time.RFC3339))
		}
		if len(a.Evidence) > 0 {
			add("evidence:")
			for _, f := range a.Evidence {
				add("  %s: %s", f.Key, f.Value)
			}
		}
		if a.Action != "" {
			add("suggested action: %s", a.Action)
		}
	}
	add("alert id: %s", a.ID)
	return fitLines(lines, maxLen)
}

// fitLines joins lines with "\n", keeping at most maxLen bytes: lines
// are dropped from the end (but the last one, the alert id, is kept) and
// replaced by a note saying how many were left out.
func fitLines(lines []string, maxLen int) string {
	full := strings.Join(lines, "\n")
	if maxLen <= 0 || len(full) <= maxLen {
		return full
	}
	last := lines[len(lines)-1]
	body := lines[:len(lines)-1]
	note := func(left int) string {
		return fmt.Sprintf("… %d more line%s not shown (message size limit)", left, plural(left))
	}
	keep, size := -1, 0
	for n := 0; n <= len(body); n++ {
		if n > 0 {
			size += len(body[n-1]) + 1
		}
		if size+len(note(len(body)-n))+1+len(last) <= maxLen {
			keep = n
		}
	}
	if keep < 0 {
		return truncateUTF8(last, maxLen)
	}
	out := append(append([]string(nil), body[:keep]...), note(len(body)-keep), last)
	return strings.Join(out, "\n")
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
