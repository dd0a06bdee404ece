package incident

import (
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// FuzzDescribe: whatever an action record holds (its detail is JSON
// written by keystile, but a report must survive anything), describing it
// never panics and its Markdown cell stays one cell: no line break, no
// unescaped pipe, no HTML.
func FuzzDescribe(f *testing.F) {
	for _, s := range [][3]string{
		{"orders.cancel_all", `{"endpoint":"live","cancelled":2,"order_ids":["1","2"],"failed":1,"supported":true}`, "x"},
		{"killswitch.engage", `{"scope":"all","in_flight":3,"persisted":false}`, "why | not"},
		{"killswitch.clear", `{"scope":"venue","engaged_rule":"killswitch.panic"}`, "a\nb"},
		{"detect.burst", `not json`, "<script>"},
		{"token.freeze", `{"order_ids":"x","cancelled":"y"}`, ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, op, detail, reason string) {
		rec := audit.Record{Seq: 1, Time: time.Unix(0, 0), Kind: audit.KindAction, Operation: op, Detail: detail, Reason: reason,
			Venue: "v|x", Token: strings.Repeat("a", 64)}
		a := action(rec, Options{})
		for _, cell := range []string{md(describe(a)), md(a.Reason), md(a.Actor)} {
			if strings.ContainsAny(cell, "\n\r<>") || strings.Contains(strings.ReplaceAll(cell, `\|`, ""), "|") {
				t.Fatalf("cell %q breaks the table", cell)
			}
		}
	})
}
