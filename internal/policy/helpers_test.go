package policy_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/venue"
)

const venuesYAML = `venues:
  binance:
    type: binance
    credential: bn-main
    base_url: "https://api.binance.com"
  okx:
    type: okx
    credential: okx-main
    base_url: "https://www.okx.com"
`

// compile parses venuesYAML + policies and compiles it.
func compile(t testing.TB, policies string) *policy.Set {
	t.Helper()
	cfg, err := config.Parse("keystile.yaml", []byte(venuesYAML+policies))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	s, err := policy.Compile(cfg)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

// monday is 2025-01-06 12:00 UTC, a Monday.
var monday = time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)

// orderInput is a limit buy of 0.01 BTCUSDT at 37500 (375 USDT) on
// binance by tok_a of policy p.
func orderInput(p string) *policy.Input {
	return &policy.Input{
		Time: monday, TokenID: "tok_a", Policy: p, Venue: "binance", Account: "bn-main",
		Operation: venue.OpOrderPlace, Method: "POST", Path: "/api/v3/order",
		Order: &venue.Order{Instrument: "BTCUSDT", Side: "buy", Type: "limit", Quantity: "0.01", Price: "37500"},
	}
}

func openDB(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func tempDB(t testing.TB) (*sqlite.DB, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keystile.db")
	db := openDB(t, p)
	t.Cleanup(func() { db.Close() })
	return db, p
}
