package incident_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/incident"
)

// Example builds a report from a small audit log: one order, then a
// panic; the report places the panic under containment.
func Example() {
	dir, _ := os.MkdirTemp("", "incident-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	path := filepath.Join(dir, "audit.jsonl")
	st, _ := audit.OpenJSONL(path)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l, _ := audit.Open(ctx, audit.Options{Store: st, Keys: keys, Now: func() time.Time { return at }})
	_ = l.Intent(ctx, audit.Event{RequestID: "r1", TokenID: "tok_a", Venue: "binance", Operation: "order.place"})
	_ = l.Action(ctx, audit.Event{RequestID: "p1", Operation: "killswitch.engage", Decision: audit.Allow, Rule: "killswitch.panic",
		Actor: "admin uid=1000", Reason: "drill", Detail: `{"scope":"all"}`})
	_ = l.Close(ctx)

	r, _ := audit.OpenJSONLReader(path)
	defer r.Close()
	rep, err := incident.Build(ctx, r, incident.Options{Since: at.Add(-time.Hour)})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range rep.Actions {
		fmt.Println(a.Phase, a.Operation, a.Actor, a.Reason)
	}
	fmt.Println("contained:", !rep.ContainedAt.IsZero())
	// Output:
	// contain killswitch.engage admin uid=1000 drill
	// contained: true
}
