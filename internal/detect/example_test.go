package detect_test

import (
	"context"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
)

// printer is a Notifier that prints each finding.
type printer struct{}

func (printer) Notify(_ context.Context, f detect.Finding) {
	fmt.Printf("%s %s: %s\n", f.Severity, f.Detector, f.Summary)
}

// The detector is an audit.Sink: the gateway records every event into it
// without waiting, and findings come out through the Notifier.
func Example() {
	ctx := context.Background()
	cfg := config.Default()
	s, err := detect.Compile(cfg) // every detector on, with its defaults
	if err != nil {
		panic(err)
	}
	d, err := detect.New(ctx, detect.Options{Settings: s, SourceKey: []byte("a key derived from the vault..."), Notifier: printer{}})
	if err != nil {
		panic(err)
	}
	defer d.Close(ctx)

	t := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	d.Record(ctx, audit.Event{Time: t, RequestID: "r1", TokenID: "tok_bot1", Source: "10.0.0.5", Venue: "binance",
		Operation: "wallet.withdraw", Decision: audit.Deny, Rule: "token.scope", Status: 403})
	_ = d.Sync(ctx)

	// Output:
	// critical sensitive_operations: wallet.withdraw attempt on binance by token tok_bot1, refused (token.scope)
}
