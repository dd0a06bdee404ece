package console

import (
	"html/template"
	"net/url"
	"slices"
	"strings"
	"time"
)

func funcs() template.FuncMap {
	return template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"clock": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("15:04:05")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			d := now.Sub(t).Round(time.Second)
			switch {
			case d < 0:
				return "in " + (-d).String()
			case d < time.Minute:
				return d.String() + " ago"
			case d < 48*time.Hour:
				return d.Truncate(time.Minute).String() + " ago"
			}
			return t.UTC().Format("2006-01-02")
		},
		"join":     strings.Join,
		"methods":  func() []string { return []string{"GET", "POST", "PUT", "DELETE", "PATCH"} },
		"dur":      formatDuration,
		"has":      func(list []string, s string) bool { return slices.Contains(list, s) },
		"get":      func(v url.Values, k string) string { return v.Get(k) },
		"getAll":   func(v url.Values, k string) []string { return v[k] },
		"checked":  func(v url.Values, k string) bool { return v.Get(k) == "on" },
		"rate":     func(f float64) string { return formatRate(f) },
		"pct":      func(n, d uint64) string { return percent(n, d) },
		"seconds":  func(d time.Duration) string { return d.Round(time.Second).String() },
		"untilNow": func(now, t time.Time) string { return t.Sub(now).Round(time.Second).String() },
	}
}

func percent(n, d uint64) string {
	if d == 0 {
		return "0%"
	}
	p := float64(n) / float64(d) * 100
	if p < 10 {
		return strings.TrimSuffix(strings.TrimSuffix(strconvF(p, 1), "0"), ".") + "%"
	}
	return strconvF(p, 0) + "%"
}
