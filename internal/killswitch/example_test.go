package killswitch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// Example engages the switch for one venue, checks who is covered, and
// clears it, on a SQLite database.
func Example() {
	dir, _ := os.MkdirTemp("", "killswitch-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	s, err := killswitch.New(ctx, killswitch.Options{Store: db.Trips()})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := s.Engage(ctx, killswitch.Engagement{Scope: killswitch.ScopeVenue, Target: "binance",
		Rule: killswitch.RulePanic, Actor: killswitch.AdminActor(1000), Reason: "API key leaked"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("new:", res.New, "persisted:", res.Persisted)
	fmt.Println("binance refused:", s.Covers("tok_any", "binance"))
	fmt.Println("kraken refused:", s.Covers("tok_any", "kraken"))
	cleared, _ := s.Clear(ctx, killswitch.Clearing{Actor: killswitch.AdminActor(1000), Reason: "key rotated"})
	fmt.Println("cleared:", len(cleared), "engaged:", s.Engaged())
	// Output:
	// new: true persisted: true
	// binance refused: true
	// kraken refused: false
	// cleared: 1 engaged: false
}
