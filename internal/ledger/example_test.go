package ledger_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/idem"
	"github.com/keystile/keystile/internal/ledger"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// Example opens two orders against a 100 USDT budget with the embedded
// store: the first is one durable write (reservation, claim, intent
// record); the second is refused by the budget and writes nothing; a
// repeat of the first order's key is answered with the stored claim.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ledger")
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	keys := audit.Keys{Checkpoint: ed25519.NewKeyFromSeed(make([]byte, 32)), Identity: []byte("identity-key-0123456789abcdef")}
	log, err := db.OpenAuditLog(ctx, sqlite.AuditOptions{Keys: keys}) // the app derives the keys from the vault
	if err != nil {
		panic(err)
	}
	var store ledger.Store = db.Ledger()

	now := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	order := func(key string) *ledger.Write {
		return &ledger.Write{
			Intent: &audit.Event{RequestID: "r-" + key, TokenID: "tok_1", Venue: "binance", Method: "POST", Operation: "order.place"},
			Budget: &ledger.Budget{At: now, Amount: decimal.RequireFromString("60"), Claims: []policy.Claim{
				{Key: "token:tok_1/daily/USDT/day:2025-01-06@UTC", Since: now.Truncate(24 * time.Hour), Limit: decimal.RequireFromString("100")}}},
			Key: &ledger.Key{Record: idem.Record{Scope: "tok_1/binance", Key: key, Fingerprint: []byte(key), ClientOrderID: "c-" + key,
				State: idem.StatePending, Owner: "o-" + key, Created: now, Updated: now}, NotBefore: now.Add(-24 * time.Hour)},
		}
	}
	first := order("k1")
	fmt.Println("first:", store.Open(ctx, first), len(first.Budget.IDs), "entry")

	var ex *policy.ExceededError
	err = store.Open(ctx, order("k2"))
	fmt.Println("second, over budget:", errors.As(err, &ex), ex.Used)

	first.Budget.Amount = decimal.Zero // within budget: now the key answers
	err = store.Open(ctx, first)
	fmt.Println("repeat:", errors.Is(err, ledger.ErrKeyTaken), first.Key.Stored.ClientOrderID)

	if err := log.Close(ctx); err != nil {
		panic(err)
	}
	r, _ := audit.OpenSQLiteReader(ctx, filepath.Join(dir, "keystile.db"))
	defer r.Close()
	rep, err := audit.Verify(ctx, r, keys.PublicKey())
	fmt.Printf("audit: %d intent record, %v\n", rep.Records, err)
	// Output:
	// first: <nil> 1 entry
	// second, over budget: true 60
	// repeat: true c-k1
	// audit: 1 intent record, <nil>
}
