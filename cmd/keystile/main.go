// Command keystile is a credential firewall for trading and betting bots.
// Everything lives in internal/; see internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	// Policies name IANA time zones (hours, calendar-day budgets): embed
	// the zone database so they work on hosts without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/keystile/keystile/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
